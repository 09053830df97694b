"""Device bindings kept in PostgreSQL while Redis is down: one device per token across every worker."""

from __future__ import annotations

import datetime as dt

import asyncpg

# Take the binding when it is ours or has been idle long enough; the outer SELECT reads the
# snapshot from before the upsert, so on a refusal it shows the holder's last use.
BIND = """
WITH bound AS (
    INSERT INTO device_bindings AS b (token_id, device_id, last_seen_at) VALUES ($1, $2, $3)
    ON CONFLICT (token_id) DO UPDATE SET device_id = EXCLUDED.device_id, last_seen_at = EXCLUDED.last_seen_at
    WHERE b.device_id = EXCLUDED.device_id OR b.last_seen_at <= EXCLUDED.last_seen_at - $4 * interval '1 millisecond'
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM bound) AS taken,
       (SELECT last_seen_at FROM device_bindings WHERE token_id = $1) AS holder_seen_at"""


async def bind(pool: asyncpg.Pool, token_id: int, device_id: str, now_ms: int, idle_ms: int) -> int | None:
    """Bind the token to this device; None when bound, else the ms until the holder's binding lapses."""
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    row = await pool.fetchrow(BIND, token_id, device_id, now, idle_ms)
    if row["taken"]:
        return None
    holder_ms = int(row["holder_seen_at"].timestamp() * 1000)
    return max(1, holder_ms + idle_ms - now_ms)
