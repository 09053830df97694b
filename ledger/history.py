"""An account's history: its transfers newest first, as its owner sees them (signed amounts)."""

from __future__ import annotations

from dataclasses import dataclass
import datetime as dt

import asyncpg

SELECT_ENTRIES = """
SELECT t.id, t.kind, t.phase, t.amount_micro, t.debit_account_id, t.description, t.created_at,
       t.pending_id, t.expires_at
FROM transfers t
WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND ($2::text IS NULL OR t.kind = $2)
ORDER BY t.id DESC LIMIT $3 OFFSET $4"""
COUNT_ENTRIES = """
SELECT count(*) FROM transfers t
WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND ($2::text IS NULL OR t.kind = $2)"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One transfer seen from one account: + into it, - out of it; holds and voids move 0."""

    id: int
    kind: str
    phase: str
    signed_micro: int
    held_micro: int | None  # the amount a hold (phase 'pending') reserves
    hold_id: int | None
    description: str
    created_at: dt.datetime


def _entry(row: asyncpg.Record, account_id: int) -> Entry:
    amount = row["amount_micro"] if row["phase"] in ("posted", "post_pending") else 0
    return Entry(row["id"], row["kind"], row["phase"], -amount if row["debit_account_id"] == account_id else amount,
                 row["amount_micro"] if row["phase"] == "pending" else None, row["pending_id"],
                 row["description"], row["created_at"])


async def entries(connection: asyncpg.Connection | asyncpg.Pool, account_id: int, *, kind: str | None = None,
                  limit: int = 50, skip: int = 0) -> list[Entry]:
    rows = await connection.fetch(SELECT_ENTRIES, account_id, kind, limit, skip)
    return [_entry(row, account_id) for row in rows]


async def count(connection: asyncpg.Connection | asyncpg.Pool, account_id: int, *, kind: str | None = None) -> int:
    return await connection.fetchval(COUNT_ENTRIES, account_id, kind)
