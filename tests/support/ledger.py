"""Helpers of the ledger tests: funded accounts, moves through a pool, sums read back."""

from __future__ import annotations

import datetime as dt

import asyncpg

import ledger
from gateway.accounts import users

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
PRICE_MICRO = 1_000_000


async def new_account(pool: asyncpg.Pool, name: str, *, deposit_micro: int = 0) -> int:
    """A new client's account id, funded from payment clearing when `deposit_micro` is set."""
    user_id = await users.ensure_client(pool, email=f"{name}@example.com")
    account_id = await ledger.user_account(pool, user_id)
    if deposit_micro:
        await move(pool, key=f"deposit:{name}", debit=await ledger.system_id(pool, "payment_clearing"),
                   credit=account_id, amount_micro=deposit_micro, kind="deposit", user_id=user_id)
    return account_id


async def move(pool: asyncpg.Pool, **fields) -> ledger.Transfer:
    fields.setdefault("now", NOW)
    async with pool.acquire() as connection:
        return await ledger.move(connection, **fields)


async def resolve(pool: asyncpg.Pool, **fields) -> ledger.Transfer:
    fields.setdefault("now", NOW)
    async with pool.acquire() as connection:
        return await ledger.resolve(connection, **fields)


async def expire(pool: asyncpg.Pool, now: dt.datetime) -> int:
    async with pool.acquire() as connection:
        return await ledger.expire_holds(connection, now=now)


async def open_holds(pool: asyncpg.Pool | asyncpg.Connection) -> list[tuple[int, dt.datetime, int]]:
    """The table of open holds (migration 0020): (hold id, expiry, amount) in hold order."""
    rows = await pool.fetch("SELECT hold_id, expires_at, amount_micro FROM open_holds ORDER BY hold_id")
    return [(row["hold_id"], row["expires_at"], row["amount_micro"]) for row in rows]


async def sums(pool: asyncpg.Pool | asyncpg.Connection, account_id: int) -> dict[str, int]:
    """The four stored sums of one account, plus `posted` (credits - debits) and `available`."""
    row = await pool.fetchrow(
        "SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM accounts"
        " WHERE id = $1", account_id)
    assert row is not None, account_id
    result = dict(row)
    result["posted"] = row["credits_posted"] - row["debits_posted"]
    result["available"] = result["posted"] - row["debits_pending"]
    return result


async def posted(pool: asyncpg.Pool | asyncpg.Connection, account_id: int) -> int:
    return (await sums(pool, account_id))["posted"]


async def transfer_count(pool: asyncpg.Pool | asyncpg.Connection) -> int:
    return await pool.fetchval("SELECT count(*) FROM transfers")


async def snapshot(pool: asyncpg.Pool | asyncpg.Connection) -> list[tuple]:
    """Every account's sums and the number of transfers: equal snapshots mean nothing moved."""
    rows = await pool.fetch("SELECT id, debits_posted, credits_posted, debits_pending, credits_pending"
                            " FROM accounts ORDER BY id")
    return [tuple(row) for row in rows] + [("transfers", await transfer_count(pool))]
