"""AI usage for staff: tokens, calls and credits by model, by API key and by day over a date range,
within the actor's scope (a manager sees their clients' calls). Each view is one pass over the
covering index ai_usage_created_idx."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from gateway.accounts.directory import SCOPED_USER_IDS

# $1 the scope (a manager's id, NULL for an admin), $2..$3 the range [from, to), $4 one user or NULL.
FILTERS = f"""
a.created_at >= $2 AND a.created_at < $3 AND ($4::bigint IS NULL OR a.user_id = $4)
AND ($1::bigint IS NULL OR a.user_id IN {SCOPED_USER_IDS})"""
SUMS = """count(*) AS calls, sum(a.input_tokens)::bigint AS input_tokens,
sum(a.cached_input_tokens)::bigint AS cached_input_tokens, sum(a.output_tokens)::bigint AS output_tokens,
sum(a.charged_micro)::bigint AS charged_micro"""
BY_MODEL = f"""
SELECT a.provider, a.model, {SUMS} FROM ai_usage a WHERE {FILTERS}
GROUP BY a.provider, a.model ORDER BY charged_micro DESC, a.model LIMIT $5"""
BY_KEY = f"""
WITH sums AS (SELECT a.api_key_id, a.user_id, {SUMS} FROM ai_usage a WHERE {FILTERS}
              GROUP BY a.api_key_id, a.user_id ORDER BY charged_micro DESC, a.api_key_id LIMIT $5)
SELECT s.*, k.prefix, k.name, u.email FROM sums s
LEFT JOIN api_keys k ON k.id = s.api_key_id JOIN users u ON u.id = s.user_id
ORDER BY s.charged_micro DESC, s.api_key_id"""
BY_DAY = f"""
SELECT (a.created_at AT TIME ZONE 'UTC')::date AS day, {SUMS} FROM ai_usage a WHERE {FILTERS}
GROUP BY 1 ORDER BY 1 LIMIT $5"""
ROWS_MAX = 100


@dataclass(frozen=True, slots=True)
class Span:
    """A report's range [start, end) and, optionally, one user."""

    start: dt.datetime
    end: dt.datetime
    user_id: int | None = None


async def by_model(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span) -> list[asyncpg.Record]:
    return await db.fetch(BY_MODEL, scope, span.start, span.end, span.user_id, ROWS_MAX)


async def by_key(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span) -> list[asyncpg.Record]:
    """The keys that cost the most in the range (at most ROWS_MAX), with their owner."""
    return await db.fetch(BY_KEY, scope, span.start, span.end, span.user_id, ROWS_MAX)


async def by_day(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span) -> list[asyncpg.Record]:
    return await db.fetch(BY_DAY, scope, span.start, span.end, span.user_id, ROWS_MAX)
