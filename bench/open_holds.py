"""The background reads of open holds, before and after migration 0020 (decision 0029).

    .venv/bin/python -m bench.open_holds                  # 500,000 holds
    .venv/bin/python -m bench.open_holds --holds 2000000

An embedded PostgreSQL is migrated up to 0019 and given a ledger of `--holds` holds placed evenly
over the last two hours (the AI holds' one-hour TTL), all but about 0.1% resolved: what one gateway
leaves at `--holds` / 7,200 holds a second. Timed there (median of 5): the hold gauges' count and an
expiry sweep as they read before 0020 (the pending rows of an expiry range, each probed for a
resolution), then 0020 is applied (timed) and the same two reads are timed as they are now (the
table of open holds). Transfers are inserted directly: the reads see the rows the ledger writes, and
the balances are not what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from devkit.embedded import EmbeddedPostgres, free_port
from gateway.accounts.ledger_watch import OPEN_HOLDS
from gateway.core import migrate
from ledger.reconcile import OPEN_HOLDS as OPEN_BY_TRANSFERS
from ledger.transfers import FIRST_DUE, OPEN_EXPIRED_HOLDS

# The reads as they were up to migration 0019.
COUNT_BEFORE = """
SELECT count(*) FILTER (WHERE p.expires_at > $1) AS open, count(*) FILTER (WHERE p.expires_at <= $1) AS expired,
       COALESCE(sum(p.amount_micro), 0)::bigint AS held_micro
FROM transfers p
WHERE p.phase = 'pending' AND p.expires_at > $1 - make_interval(secs => 3600)
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""
SWEEP_BEFORE = """
SELECT p.id FROM transfers p
WHERE p.phase = 'pending' AND p.expires_at <= $1 AND p.expires_at > $3
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
ORDER BY p.id LIMIT $2"""
SWEEP_LOOKBACK = dt.timedelta(minutes=10, seconds=5)  # the old sweep's look-back plus one interval
HOLDS = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro, phase,
                       kind, expires_at, created_at)
SELECT 'hold-' || g, '\\x00', $1, $2, 100, 'pending', 'usage',
       $3::timestamptz + interval '1 hour' - g * interval '7200 seconds' / $4::integer,
       $3::timestamptz - g * interval '7200 seconds' / $4::integer
FROM generate_series(1, $4::integer) g"""
RESOLUTIONS = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro, phase,
                       kind, pending_id)
SELECT 'post-' || id, '\\x00', debit_account_id, credit_account_id, 100, 'post_pending', 'usage', id
FROM transfers WHERE phase = 'pending' AND random() > 0.001"""
REPEATS = 5


async def timed_ms(connection: asyncpg.Connection, query: str, *args) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        await connection.fetch(query, *args)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


async def measure(admin_url: str, holds: int) -> dict:
    admin = await asyncpg.connect(admin_url)
    await admin.execute('DROP DATABASE IF EXISTS "open_holds"')
    await admin.execute('CREATE DATABASE "open_holds"')
    await admin.close()
    url = admin_url.rsplit("/", 1)[0] + "/open_holds"
    await migrate.apply(url, [m for m in migrate.discover() if m.version < 20])
    connection = await asyncpg.connect(url)
    try:
        debit, credit = [row["id"] for row in await connection.fetch("SELECT id FROM accounts ORDER BY id LIMIT 2")]
        now = dt.datetime.now(dt.timezone.utc)
        await connection.execute(HOLDS, debit, credit, now, holds)
        await connection.execute(RESOLUTIONS)
        await connection.execute("VACUUM ANALYZE transfers")
        before = {"count_ms": await timed_ms(connection, COUNT_BEFORE, now),
                  "sweep_ms": await timed_ms(connection, SWEEP_BEFORE, now, 500, now - SWEEP_LOOKBACK)}
        started = time.perf_counter()
        await migrate.apply(url)
        migration_s = round(time.perf_counter() - started, 2)
        await connection.execute("VACUUM ANALYZE open_holds")
        after = {"count_ms": await timed_ms(connection, OPEN_HOLDS, now),
                 "sweep_ms": await timed_ms(connection, OPEN_EXPIRED_HOLDS, now, 500, *FIRST_DUE)}
        open_count = await connection.fetchval("SELECT count(*) FROM open_holds")
        unresolved = await connection.fetchval(f"SELECT count(*) FROM ({OPEN_BY_TRANSFERS}) h")
    finally:
        await connection.close()
    return {"holds": holds, "open": open_count, "unresolved": unresolved, "before_0020": before,
            "migration_0020_s": migration_s, "after_0020": after}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.open_holds", description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=500_000)
    arguments = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-holds-"))
    os.chmod(directory, 0o755)
    postgres = EmbeddedPostgres(directory / "postgres", free_port())
    try:
        postgres.start(for_tests=True)
        result = asyncio.run(measure(postgres.url, arguments.holds))
    finally:
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{result['holds']:,} holds over two hours, {result['open']:,} open")
    print(f"  before 0020: gauges' count {result['before_0020']['count_ms']} ms, "
          f"sweep {result['before_0020']['sweep_ms']} ms")
    print(f"  migration 0020: {result['migration_0020_s']} s")
    print(f"  after 0020:  gauges' count {result['after_0020']['count_ms']} ms, "
          f"sweep {result['after_0020']['sweep_ms']} ms")


if __name__ == "__main__":
    main()
