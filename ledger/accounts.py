"""Accounts: one per user (created on demand) and the named system accounts seeded by migration."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# Revenue in shards (migration 0018, decision 0021 "Lanes"): an AI hold credits its user's shard, so
# the batches of different lanes (users) lock no row in common. "revenue" is shard 0 and takes every
# other credit (purchases, refunds); the shards together are the revenue.
REVENUE_SHARDS = ("revenue", "revenue-1", "revenue-2", "revenue-3")
SYSTEM = (*REVENUE_SHARDS, "payment_clearing", "promotions", "refunds", "adjustments")

SELECT_SYSTEM = "SELECT code, id FROM accounts WHERE code IS NOT NULL"
ENSURE_USER = """
WITH inserted AS (
    INSERT INTO accounts (kind, user_id) VALUES ('user', $1)
    ON CONFLICT (user_id) DO NOTHING RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM accounts WHERE user_id = $1
LIMIT 1"""
SELECT_BALANCE = """
SELECT id, debits_posted, credits_posted, debits_pending, credits_pending, overdraft_micro, owed_micro
FROM accounts WHERE user_id = $1"""
SELECT_TOTALS = "SELECT credits_posted, debits_posted, debits_pending FROM accounts WHERE user_id = $1"
SET_OVERDRAFT = "UPDATE accounts SET overdraft_micro = $2 WHERE user_id = $1"
# In id order, as ledger_move locks them, so a caller that locks first never waits in a cycle.
LOCK_AVAILABLE = """
SELECT id, credits_posted - debits_posted - debits_pending AS available_micro
FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"""

_system_ids: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: int | None
    posted_micro: int       # credits_posted - debits_posted
    held_micro: int         # debits_pending: holds not yet posted or voided
    incoming_micro: int     # credits_pending
    overdraft_micro: int
    owed_micro: int = 0     # a refund's rest the balance could not cover (ledger.debts)

    @property
    def available_micro(self) -> int:
        """What the user may still spend: posted minus held minus owed (the overdraft not included)."""
        return self.posted_micro - self.held_micro - self.owed_micro


async def system_id(connection: asyncpg.Connection | asyncpg.Pool, code: str) -> int:
    """The id of a system account; the seeded ids never change, so they are cached per process."""
    assert code in SYSTEM, code
    if code not in _system_ids:
        for row in await connection.fetch(SELECT_SYSTEM):
            _system_ids[row["code"]] = row["id"]
    return _system_ids[code]


def revenue_shard(user_id: int) -> str:
    """The revenue account an AI hold of this user credits: one of REVENUE_SHARDS, by user id (a
    Batcher lane takes users by id modulo its lanes, a divisor of the shards)."""
    return REVENUE_SHARDS[user_id % len(REVENUE_SHARDS)]


async def user_account(connection: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
    """The user's account id, created with a zero balance if it does not exist yet."""
    account_id = await connection.fetchval(ENSURE_USER, user_id)
    if account_id is None:
        # A concurrent creator committed after this statement's snapshot: read it now.
        account_id = await connection.fetchval("SELECT id FROM accounts WHERE user_id = $1", user_id)
    return account_id


async def balance(connection: asyncpg.Connection | asyncpg.Pool, user_id: int) -> Balance:
    row = await connection.fetchrow(SELECT_BALANCE, user_id)
    if row is None:
        return Balance(None, 0, 0, 0, 0)
    return Balance(row["id"], row["credits_posted"] - row["debits_posted"], row["debits_pending"],
                   row["credits_pending"], row["overdraft_micro"], row["owed_micro"])


@dataclass(frozen=True, slots=True)
class Totals:
    """A user's account over its whole life."""

    received_micro: int  # every credit that came in (credits_posted)
    spent_micro: int     # every credit that went out (debits_posted)
    held_micro: int      # held now (debits_pending)


async def totals(connection: asyncpg.Connection | asyncpg.Pool, user_id: int) -> Totals:
    row = await connection.fetchrow(SELECT_TOTALS, user_id)
    if row is None:
        return Totals(0, 0, 0)
    return Totals(row["credits_posted"], row["debits_posted"], row["debits_pending"])


async def set_overdraft(connection: asyncpg.Connection | asyncpg.Pool, user_id: int,
                        overdraft_micro: int) -> None:
    """Allow the user's account to go this far below zero (0 = not at all)."""
    assert overdraft_micro >= 0
    await user_account(connection, user_id)
    await connection.execute(SET_OVERDRAFT, user_id, overdraft_micro)


async def lock_available(connection: asyncpg.Connection, account_ids: list[int]) -> dict[int, int]:
    """Lock these accounts until the caller's transaction ends; their available balances by id.

    For a move whose amount depends on the balance (a claw-back of what is there): the balance
    read here is the one the move will see.
    """
    assert connection.is_in_transaction(), "the locks would end with the statement"
    rows = await connection.fetch(LOCK_AVAILABLE, account_ids)
    return {row["id"]: row["available_micro"] for row in rows}
