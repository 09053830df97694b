"""The gateway's own counters, read in-process."""

from __future__ import annotations

import asyncio
import re

from gateway.core import metrics


def database_queries() -> float:
    return metrics.DATABASE_QUERIES._value.get()


async def settle() -> None:
    # asyncpg reports queries to its loggers via call_soon; let those callbacks run.
    for _ in range(3):
        await asyncio.sleep(0)


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
