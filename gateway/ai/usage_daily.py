"""Daily totals of AI usage: calls, tokens and credits per closed UTC day, provider and model, rolled
up once on first use (as ledger/daily.py does for money), so the reports by model and by day over a
month read a few hundred rows; the open days (yesterday and today) are summed live."""

from __future__ import annotations

import datetime as dt

import asyncpg

# $1 the first day, $2 the day after the last.
SUMS = """
SELECT (a.created_at AT TIME ZONE 'UTC')::date AS day, a.provider, a.model, count(*) AS calls,
       sum(a.input_tokens)::bigint AS input_tokens, sum(a.cached_input_tokens)::bigint AS cached_input_tokens,
       sum(a.output_tokens)::bigint AS output_tokens, sum(a.charged_micro)::bigint AS charged_micro
FROM ai_usage a
WHERE a.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
  AND a.created_at < ($2::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2, 3"""
MISSING_DAYS = """
SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM ai_usage_days_rolled r WHERE r.day = d::date) ORDER BY 1"""
ROLL_UP = f"""
WITH sums AS ({SUMS}), rows AS (
    INSERT INTO ai_usage_daily (day, provider, model, calls, input_tokens, cached_input_tokens, output_tokens,
                                charged_micro)
    SELECT * FROM sums ON CONFLICT DO NOTHING)
INSERT INTO ai_usage_days_rolled (day) VALUES ($1::date) ON CONFLICT DO NOTHING"""
ROLLED = """
SELECT day, provider, model, calls, input_tokens, cached_input_tokens, output_tokens, charged_micro
FROM ai_usage_daily WHERE day >= $1::date AND day <= $2::date"""
DAYS_PER_CALL_MAX = 92


async def totals(db: asyncpg.Pool | asyncpg.Connection, first_day: dt.date, last_day: dt.date,
                 today: dt.date, primary: asyncpg.Pool | None = None) -> list[asyncpg.Record]:
    """(day, provider, model, calls, tokens, credits) rows for every day from first_day to last_day,
    rolling up the closed days (before yesterday) that are not yet rolled up.

    `db` may be a read replica's; then `primary` is where a missing day is rolled up, and the call
    reads there too (the replica has not seen that roll-up yet)."""
    last_closed = min(last_day, today - dt.timedelta(days=2))
    rows: list[asyncpg.Record] = []
    if first_day <= last_closed:
        missing = await db.fetch(MISSING_DAYS, first_day, last_closed)
        if missing and primary is not None:
            db = primary
        for row in missing[:DAYS_PER_CALL_MAX]:
            await db.execute(ROLL_UP, row["day"], row["day"] + dt.timedelta(days=1))
        rows += await db.fetch(ROLLED, first_day, last_closed)
    open_from = max(first_day, last_closed + dt.timedelta(days=1))
    if open_from <= last_day:
        rows += await db.fetch(SUMS, open_from, last_day + dt.timedelta(days=1))
    return rows
