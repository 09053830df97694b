"""The gateway's own counters, read in-process."""

from __future__ import annotations

import asyncio
import re

from gateway.core import metrics


def database_queries() -> float:
    return metrics.DATABASE_QUERIES._value.get()


async def settle(quiet_s: float = 0.1, most_s: float = 5.0) -> None:
    """Let the query count come to rest: asyncpg reports queries to its loggers via call_soon, and a
    gateway's start-up runs its background checks (backend probes, hold counts, a reconciliation)
    beside the test's first requests."""
    for _ in range(3):
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    deadline_s = loop.time() + most_s
    count = database_queries()
    while loop.time() < deadline_s:
        await asyncio.sleep(quiet_s)
        if database_queries() == count:
            return
        count = database_queries()


async def gauge(gateway, series: str) -> float | None:
    """A series' value on the gateway's /metrics (`series` a regular expression), or None if absent."""
    text = await (await gateway.get("/metrics")).text()
    found = re.search(rf"^{series} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


async def eventually_equals(gateway, series: str, value: float, seconds: float = 5.0) -> float | None:
    """The series' value once it equals `value`, or the last one seen after `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if (seen := await gauge(gateway, series)) == value:
            return seen
        await asyncio.sleep(0.05)
    return await gauge(gateway, series)
