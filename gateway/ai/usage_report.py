"""AI usage reports: tokens, calls and credits by model, provider, API key and day over a date range,
for one user, within the actor's scope (a manager sees their clients' calls), or everyone's. The
admin UI's views (the costliest ROWS_MAX) read the daily roll-up (usage_daily) for an admin's whole
days; the others, and every report of the JSON API (exact, to the micro-credit the ledger charged:
each charged call's row is written in the statement that posts its charge), are one pass over a
covering index (ai_usage_created_idx, or ai_usage_user_created_idx for one user or a manager's
clients). The API's exports stream every group, or every call, from a server-side cursor."""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.accounts.directory import SCOPED_USER_IDS
from gateway.ai import usage_daily

SUMS = """count(*) AS calls, sum(a.input_tokens)::bigint AS input_tokens,
sum(a.cached_input_tokens)::bigint AS cached_input_tokens, sum(a.output_tokens)::bigint AS output_tokens,
sum(a.charged_micro)::bigint AS charged_micro"""
# {where} is composed from fixed fragments for the filters present (so each gets its index); the
# last parameter is the row limit.
BY_MODEL = f"""
SELECT a.provider, a.model, {SUMS} FROM ai_usage a WHERE {{where}}
GROUP BY a.provider, a.model ORDER BY charged_micro DESC, a.model LIMIT ${{limit}}"""
BY_KEY = f"""
WITH sums AS (SELECT a.api_key_id, a.user_id, {SUMS} FROM ai_usage a WHERE {{where}}
              GROUP BY a.api_key_id, a.user_id ORDER BY charged_micro DESC, a.api_key_id LIMIT ${{limit}})
SELECT s.*, k.prefix, k.name, u.email FROM sums s
LEFT JOIN api_keys k ON k.id = s.api_key_id JOIN users u ON u.id = s.user_id
ORDER BY s.charged_micro DESC, s.api_key_id"""
BY_DAY = f"""
SELECT (a.created_at AT TIME ZONE 'UTC')::date AS day, {SUMS} FROM ai_usage a WHERE {{where}}
GROUP BY 1 ORDER BY 1 LIMIT ${{limit}}"""
ROWS_MAX = 100
# The JSON API's groupings: what each selects and groups by (fixed fragments).
GROUPINGS = {
    "day": ("(a.created_at AT TIME ZONE 'UTC')::date AS day", "1", ""),
    "model": ("a.provider, a.model", "a.provider, a.model", ""),
    "provider": ("a.provider", "a.provider", ""),
    "key": ("a.api_key_id AS key_id, a.user_id, k.prefix AS key_prefix, k.name AS key_name",
            "a.api_key_id, a.user_id, k.prefix, k.name", "LEFT JOIN api_keys k ON k.id = a.api_key_id"),
}
GROUPED = f"""
SELECT {{select}}, {SUMS} FROM ai_usage a {{join}} WHERE {{where}} GROUP BY {{group}} ORDER BY {{group}}"""
CALLS = """
SELECT a.id, a.created_at, a.request_id, a.user_id, a.api_key_id, a.provider, a.model, a.input_tokens,
       a.cached_input_tokens, a.output_tokens, a.charged_micro, a.outcome, a.stream, a.usage_source, a.latency_ms
FROM ai_usage a WHERE {where} ORDER BY a.created_at, a.id"""
# Rows a cursor fetches from PostgreSQL at a time while exporting.
EXPORT_PREFETCH = 1000
MEASURES = ("calls", "input_tokens", "cached_input_tokens", "output_tokens", "charged_micro")


@dataclass(frozen=True, slots=True)
class Span:
    """A report's range [start, end) and, optionally, one user."""

    start: dt.datetime
    end: dt.datetime
    user_id: int | None = None

    def whole_days(self) -> tuple[dt.date, dt.date] | None:
        """(first day, last day) when the span is whole UTC days, else None."""
        if any(edge.utcoffset() != dt.timedelta(0) or edge.timetz().replace(tzinfo=None) != dt.time()
               for edge in (self.start, self.end)):
            return None
        return self.start.date(), (self.end - dt.timedelta(days=1)).date()


def _where(scope: int | None, span: Span) -> tuple[str, list[object]]:
    conditions = ["a.created_at >= $1", "a.created_at < $2"]
    arguments: list[object] = [span.start, span.end]
    if span.user_id is not None:
        arguments.append(span.user_id)
        conditions.append(f"a.user_id = ${len(arguments)}")
    if scope is not None:
        arguments.append(scope)
        conditions.append("a.user_id IN " + SCOPED_USER_IDS.replace("$1", f"${len(arguments)}"))
    return " AND ".join(conditions), arguments


async def _fetch(db: asyncpg.Pool | asyncpg.Connection, template: str, scope: int | None,
                 span: Span) -> list[asyncpg.Record]:
    where, arguments = _where(scope, span)
    arguments.append(ROWS_MAX)
    return await db.fetch(template.format(where=where, limit=len(arguments)), *arguments)


def grouped_statement(grouping: str, scope: int | None, span: Span) -> tuple[str, list[object]]:
    """Every group of the span (no limit), in the grouping's order: the JSON API's report."""
    select, group, join = GROUPINGS[grouping]
    where, arguments = _where(scope, span)
    return GROUPED.format(select=select, group=group, join=join, where=where), arguments


def calls_statement(scope: int | None, span: Span) -> tuple[str, list[object]]:
    """Every call of the span, oldest first: the JSON API's export of single calls."""
    where, arguments = _where(scope, span)
    return CALLS.format(where=where), arguments


async def stream(pool: asyncpg.Pool, statement: str, arguments: list[object]) -> AsyncIterator[asyncpg.Record]:
    """The statement's rows from a server-side cursor in small batches, over one consistent snapshot."""
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(statement, *arguments, prefetch=EXPORT_PREFETCH):
            yield row


async def _rolled_up(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span,
                     today: dt.date, primary: asyncpg.Pool | None) -> list[asyncpg.Record] | None:
    """The roll-up's rows for an admin's whole-day span over everyone; None when it does not apply."""
    days = span.whole_days()
    if scope is not None or span.user_id is not None or days is None:
        return None
    return await usage_daily.totals(db, days[0], days[1], today, primary)


def _summed(rows: list[asyncpg.Record], key: str) -> list[dict[str, Any]]:
    sums: dict[Any, dict[str, Any]] = collections.defaultdict(dict)
    for row in rows:
        entry = sums[tuple(row[name] for name in key.split(","))]
        for name in key.split(","):
            entry[name] = row[name]
        for measure in MEASURES:
            entry[measure] = entry.get(measure, 0) + row[measure]
    return list(sums.values())


async def by_model(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span,
                   today: dt.date, primary: asyncpg.Pool | None = None) -> list[Any]:
    """Per provider and model, the costliest first (at most ROWS_MAX); `db` may be a read replica's,
    `primary` then rolls up the closed days the replica lacks (usage_daily.totals)."""
    rolled = await _rolled_up(db, scope, span, today, primary)
    if rolled is None:
        return await _fetch(db, BY_MODEL, scope, span)
    summed = _summed(rolled, "provider,model")
    return sorted(summed, key=lambda row: (-row["charged_micro"], row["model"]))[:ROWS_MAX]


async def by_key(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span) -> list[asyncpg.Record]:
    """The keys that cost the most in the range (at most ROWS_MAX), with their owner."""
    return await _fetch(db, BY_KEY, scope, span)


async def by_day(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, span: Span,
                 today: dt.date, primary: asyncpg.Pool | None = None) -> list[Any]:
    """Per UTC day with usage, oldest first (`primary` as for by_model)."""
    rolled = await _rolled_up(db, scope, span, today, primary)
    if rolled is None:
        return await _fetch(db, BY_DAY, scope, span)
    return sorted(_summed(rolled, "day"), key=lambda row: row["day"])[:ROWS_MAX]
