"""The gateway's own counters, read in-process."""

from __future__ import annotations

import asyncio

from gateway.core import metrics


def database_queries() -> float:
    return metrics.DATABASE_QUERIES._value.get()


async def settle() -> None:
    # asyncpg reports queries to its loggers via call_soon; let those callbacks run.
    for _ in range(3):
        await asyncio.sleep(0)
