"""Daily totals of the ledger: posted money per UTC day, kind and user side, rolled up once per closed
day so a dashboard's 30 days read a few hundred rows instead of every transfer.

A day is closed from the day after tomorrow on: a transfer carries the time it was made, and no
transaction stays open for a day. Its totals never change after that (transfers are append-only),
so each closed day is summed once, lazily, by whoever asks first; the open days (yesterday and
today) are summed live from the covering index. Every transfer has one user side and one system
side: 'to_user' when the system account pays (a deposit, a refund), 'from_user' when the user does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from ledger.accounts import SYSTEM, system_id

# $1 the first day, $2 the day after the last, $3 the system accounts' ids.
SUMS = """
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, t.kind,
       CASE WHEN t.debit_account_id = ANY($3::bigint[]) THEN 'to_user' ELSE 'from_user' END AS side,
       sum(t.amount_micro)::bigint AS amount_micro, count(*) AS transfers
FROM transfers t
WHERE t.phase IN ('posted', 'post_pending')
  AND t.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
  AND t.created_at < ($2::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2, 3"""
MISSING_DAYS = """
SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM ledger_days_rolled r WHERE r.day = d::date) ORDER BY 1"""
ROLL_UP = f"""
WITH sums AS ({SUMS}), rows AS (
    INSERT INTO ledger_daily (day, kind, side, amount_micro, transfers)
    SELECT day, kind, side, amount_micro, transfers FROM sums ON CONFLICT DO NOTHING)
INSERT INTO ledger_days_rolled (day) VALUES ($1::date) ON CONFLICT DO NOTHING"""
ROLLED = """
SELECT day, kind, side, amount_micro, transfers FROM ledger_daily WHERE day >= $1::date AND day <= $2::date"""
# Days rolled up in one call at most: a new database fills a long history over several calls.
DAYS_PER_CALL_MAX = 62


@dataclass(frozen=True, slots=True)
class DayTotal:
    day: dt.date
    kind: str
    side: str  # 'to_user' | 'from_user'
    amount_micro: int
    transfers: int


async def system_ids(connection: asyncpg.Connection | asyncpg.Pool) -> list[int]:
    return [await system_id(connection, code) for code in SYSTEM]


async def totals(connection: asyncpg.Connection | asyncpg.Pool, first_day: dt.date,
                 today: dt.date, primary: asyncpg.Connection | asyncpg.Pool | None = None) -> list[DayTotal]:
    """Every (day, kind, side) total from first_day to today (UTC days), rolling up closed days
    that are not yet rolled up.

    `connection` may be a read replica's; then `primary` is where a missing day is rolled up, and
    the call reads its totals there too (the replica has not seen that roll-up yet)."""
    assert first_day <= today
    systems = await system_ids(connection)
    last_closed = today - dt.timedelta(days=2)
    rows: list[asyncpg.Record] = []
    if first_day <= last_closed:
        missing = await connection.fetch(MISSING_DAYS, first_day, last_closed)
        if missing and primary is not None:
            connection = primary
        for row in missing[:DAYS_PER_CALL_MAX]:
            await connection.execute(ROLL_UP, row["day"], row["day"] + dt.timedelta(days=1), systems)
        rows += await connection.fetch(ROLLED, first_day, last_closed)
    open_from = max(first_day, last_closed + dt.timedelta(days=1))
    rows += await connection.fetch(SUMS, open_from, today + dt.timedelta(days=1), systems)
    return [DayTotal(row["day"], row["kind"], row["side"], row["amount_micro"], row["transfers"]) for row in rows]
