"""What Redis itself counts: the script calls the gateway made, read from INFO commandstats."""

from __future__ import annotations

import redis.asyncio as redis_asyncio


async def script_calls(client: redis_asyncio.Redis) -> int:
    """EVALSHA and EVAL calls Redis has run since it started (every client's)."""
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
