"""The gateway's background sweep returns expired holds to their owners without any request."""

from __future__ import annotations

import asyncio
import datetime as dt

import ledger
from gateway.accounts import hold_expiry
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


class FixedClock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now_s(self) -> float:
        return self.at.timestamp()


async def _hold(database, user_id: int, key: str, until: dt.datetime) -> ledger.Transfer:
    account = await ledger.user_account(database, user_id)
    revenue = await ledger.system_id(database, "revenue")
    async with database.acquire() as connection:
        return await ledger.move(connection, key=key, debit=account, credit=revenue, amount_micro=1_000_000,
                                 kind="usage", now=until - dt.timedelta(minutes=1), user_id=user_id, hold_until=until)


async def _voided(database, hold: ledger.Transfer) -> bool:
    return bool(await database.fetchval("SELECT count(*) FROM transfers WHERE pending_id = $1", hold.id))


async def test_after_a_complete_sweep_only_recent_expiries_are_looked_at_and_a_full_sweep_comes_back(
        gateway, database):
    user = await register(gateway, "sweeps@example.com")
    await deposit(database, user["id"], 10)
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    first = await _hold(database, user["id"], "first", start)
    clock = FixedClock(start + dt.timedelta(hours=1))
    sweeper = hold_expiry.Sweeper(database, clock)
    assert await sweeper.sweep() == 1 and await _voided(database, first)  # the first sweep reads everything
    # A hold that expired well before the last complete sweep (a clock far behind) is not looked at
    # by the next ones; one that expired within the look-back is.
    stale = await _hold(database, user["id"], "stale", start + dt.timedelta(minutes=30))
    recent = await _hold(database, user["id"], "recent", clock.at - hold_expiry.LOOKBACK / 2)
    clock.at += dt.timedelta(seconds=5)
    assert await sweeper.sweep() == 1
    assert await _voided(database, recent) and not await _voided(database, stale)
    # The periodic full sweep finds it.
    sweeper.sweeps = hold_expiry.FULL_SWEEP_EVERY
    assert await sweeper.sweep() == 1 and await _voided(database, stale)
    assert (await ledger.balance(database, user["id"])).available_micro == 10_000_000


async def test_a_sweep_cut_short_by_its_batch_keeps_looking_from_where_it_was(gateway, database, monkeypatch):
    user = await register(gateway, "batches@example.com")
    await deposit(database, user["id"], 10)
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    holds = [await _hold(database, user["id"], f"h{n}", start + dt.timedelta(minutes=n)) for n in range(3)]
    original = ledger.expire_holds_since

    async def two_at_a_time(connection, **fields):
        return await original(connection, **{**fields, "batch_max": 2})

    monkeypatch.setattr(ledger, "expire_holds_since", two_at_a_time)
    sweeper = hold_expiry.Sweeper(database, FixedClock(start + dt.timedelta(hours=2)))
    assert await sweeper.sweep() == 2
    assert sweeper.expired_after == ledger.transfers.BEGINNING  # not complete: the floor stays
    assert await sweeper.sweep() == 1
    assert all([await _voided(database, hold) for hold in holds])
