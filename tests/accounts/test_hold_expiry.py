"""The gateway's background sweep returns expired holds to their owners without any request."""

from __future__ import annotations

import asyncio
import datetime as dt

import ledger
from tests.support.accounts import deposit, register


async def test_a_running_gateway_voids_expired_holds_by_itself(gateway_factory, database):
    gateway = await gateway_factory(hold_expiry_interval_s=0.05)
    user = await register(gateway, "held@example.com")
    await deposit(database, user["id"], 10)
    account = await ledger.user_account(database, user["id"])
    revenue = await ledger.system_id(database, "revenue")
    async with database.acquire() as connection:
        hold = await ledger.move(connection, key="hold-1", debit=account, credit=revenue, amount_micro=4_000_000,
                                 kind="usage", now=dt.datetime.now(dt.timezone.utc), user_id=user["id"],
                                 hold_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=100))
    assert (await ledger.balance(database, user["id"])).available_micro == 6_000_000
    for _ in range(100):
        if await database.fetchval("SELECT count(*) FROM transfers WHERE pending_id = $1", hold.id):
            break
        await asyncio.sleep(0.05)
    resolution = await database.fetchrow("SELECT phase, metadata FROM transfers WHERE pending_id = $1", hold.id)
    assert resolution["phase"] == "void_pending"
    assert (await ledger.balance(database, user["id"])).available_micro == 10_000_000
