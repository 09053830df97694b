"""Debts: what a take-back (a provider's refund) could not take from a user's balance, and its
repayment from later money. A user who owes may spend only what exceeds the debt (ledger_move,
migration 0011); `accounts.owed_micro` is the running sum of the debts rows, checked by reconcile."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from ledger import transfers

# Both accounts, in id order as ledger_move locks them, so a take-back and a concurrent move of the
# same accounts never wait on each other in a cycle.
LOCK = """
SELECT id, credits_posted - debits_posted - debits_pending AS available_micro, owed_micro
FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"""
RECORD = "SELECT status FROM ledger_debt($1, $2, $3, $4, $5, $6)"
ALREADY = """
SELECT EXISTS (SELECT 1 FROM transfers WHERE idempotency_key = $1)
    OR EXISTS (SELECT 1 FROM debts WHERE idempotency_key = $1)"""


@dataclass(frozen=True, slots=True)
class TakeBack:
    taken_micro: int     # moved out of the balance now (a chargeback transfer)
    owed_micro: int      # recorded as owed: blocks spending until later money repays it
    replayed: bool


async def _lock(connection: asyncpg.Connection, account_id: int, to_account_id: int) -> asyncpg.Record:
    """The user's account row, locked with the other account until the caller's transaction ends."""
    assert connection.is_in_transaction(), "the lock would end with the statement"
    rows = {row["id"]: row for row in await connection.fetch(LOCK, [account_id, to_account_id])}
    if account_id not in rows or to_account_id not in rows:
        raise transfers.LedgerError(f"unknown account(s) {sorted({account_id, to_account_id} - set(rows))}")
    return rows[account_id]


async def take_back(connection: asyncpg.Connection, *, key: str, account_id: int, to_account_id: int,
                    amount_micro: int, user_id: int, now: dt.datetime, description: str = "",
                    metadata: dict[str, Any] | None = None) -> TakeBack:
    """Take `amount_micro` from the user's account to `to_account_id`: what the available balance
    allows as a chargeback, the rest recorded as owed. Once per key; in the caller's transaction,
    which keeps the account locked until it commits."""
    transfers._check_amount(amount_micro)
    row = await _lock(connection, account_id, to_account_id)
    if await connection.fetchval(ALREADY, key):
        return TakeBack(0, 0, True)
    taken = max(0, min(amount_micro, row["available_micro"]))
    if taken:
        await transfers.move(connection, key=key, debit=account_id, credit=to_account_id, amount_micro=taken,
                             kind="chargeback", now=now, user_id=user_id, description=description,
                             metadata=metadata)
    owed = amount_micro - taken
    if owed:
        await connection.fetchval(RECORD, key, account_id, "owed", owed, None, now)
    return TakeBack(taken, owed, False)


async def repay(connection: asyncpg.Connection, *, key: str, account_id: int, to_account_id: int,
                user_id: int, now: dt.datetime, description: str = "debt repaid",
                metadata: dict[str, Any] | None = None) -> int:
    """Pay the user's debt from their available balance, as far as it goes; returns what was paid.
    Call it after money comes in (a deposit), in that transaction: deposits pay the debt first."""
    row = await _lock(connection, account_id, to_account_id)
    paid = min(row["owed_micro"], max(0, row["available_micro"]))
    if paid <= 0:
        return 0
    transfer = await transfers.move(connection, key=key, debit=account_id, credit=to_account_id, amount_micro=paid,
                                    kind="chargeback", now=now, user_id=user_id, description=description,
                                    metadata=metadata)
    if transfer.replayed:
        return 0
    await connection.fetchval(RECORD, key, account_id, "repaid", paid, transfer.id, now)
    return paid
