"""The ledger as staff explore it: transfers newest first, filtered by user, type and date range,
within the actor's scope (a manager sees their clients' transfers) — one keyset page at a time, or
every match streamed from a server-side cursor for a CSV export (never held in memory at once).

The statement is composed from fixed fragments for the filters present, so each filter gets the
index made for it (migration 0012: created_at, (kind, created_at), (user_id, created_at))."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from gateway.accounts.directory import SCOPED_USER_IDS

COLUMNS = """
SELECT t.id, t.created_at, t.kind, t.phase, t.amount_micro, t.user_id, t.pending_id, t.description,
       t.debit_account_id, t.credit_account_id, coalesce(d.code, 'user') AS debit_code,
       coalesce(c.code, 'user') AS credit_code, u.email
FROM transfers t
JOIN accounts d ON d.id = t.debit_account_id JOIN accounts c ON c.id = t.credit_account_id
LEFT JOIN users u ON u.id = t.user_id"""
# Rows a cursor fetches from PostgreSQL at a time while exporting.
EXPORT_PREFETCH = 1000


@dataclass(frozen=True, slots=True)
class Filters:
    user_id: int | None = None
    kind: str | None = None
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after this (created_at, id), newest first."""

    created_at: dt.datetime
    id: int


def _statement(scope: int | None, filters: Filters, cursor: Cursor | None,
               limit: int | None) -> tuple[str, list[object]]:
    conditions: list[str] = []
    arguments: list[object] = []

    def add(fragment: str, *values: object) -> None:
        numbers = [f"${len(arguments) + index}" for index in range(1, len(values) + 1)]
        conditions.append(fragment.format(*numbers))
        arguments.extend(values)

    if scope is not None:
        add("t.user_id IN " + SCOPED_USER_IDS.replace("$1", "{0}"), scope)
    if filters.user_id is not None:
        add("t.user_id = {0}", filters.user_id)
    if filters.kind is not None:
        add("t.kind = {0}", filters.kind)
    if filters.start is not None:
        add("t.created_at >= {0}", filters.start)
    if filters.end is not None:
        add("t.created_at < {0}", filters.end)
    if cursor is not None:
        add("(t.created_at, t.id) < ({0}, {1})", cursor.created_at, cursor.id)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    tail = " ORDER BY t.created_at DESC, t.id DESC"
    if limit is not None:
        arguments.append(limit)
        tail += f" LIMIT ${len(arguments)}"
    return COLUMNS + where + tail, arguments


async def page(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, filters: Filters, *,
               cursor: Cursor | None, limit: int) -> list[asyncpg.Record]:
    statement, arguments = _statement(scope, filters, cursor, limit)
    return await db.fetch(statement, *arguments)


async def stream(pool: asyncpg.Pool, scope: int | None, filters: Filters) -> AsyncIterator[asyncpg.Record]:
    """Every matching transfer, newest first, read from a server-side cursor in small batches."""
    statement, arguments = _statement(scope, filters, None, None)
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(statement, *arguments, prefetch=EXPORT_PREFETCH):
            yield row
