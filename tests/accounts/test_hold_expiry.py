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


async def test_a_sweep_voids_every_hold_due_batch_after_batch_and_leaves_the_rest(gateway, database, monkeypatch):
    """A backlog (holds of a gateway that stopped) drains in one sweep, a batch at a time."""
    monkeypatch.setattr(hold_expiry, "BATCH_MAX", 2)
    user = await register(gateway, "batches@example.com")
    await deposit(database, user["id"], 10)
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    due = [await _hold(database, user["id"], f"h{n}", start + dt.timedelta(minutes=n)) for n in range(5)]
    later = await _hold(database, user["id"], "later", start + dt.timedelta(hours=3))
    clock = FixedClock(start + dt.timedelta(hours=2))
    assert await hold_expiry.expire_once(database, clock) == 5
    assert all([await _voided(database, hold) for hold in due]) and not await _voided(database, later)
    assert await hold_expiry.expire_once(database, clock) == 0
    assert (await ledger.balance(database, user["id"])).available_micro == 9_000_000


async def test_a_hold_placed_with_a_clock_far_behind_is_still_voided(gateway, database):
    """The sweep reads every open hold due, however long ago it expired (no look-back window)."""
    user = await register(gateway, "behind@example.com")
    await deposit(database, user["id"], 10)
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    clock = FixedClock(now)
    assert await hold_expiry.expire_once(database, clock) == 0
    stale = await _hold(database, user["id"], "stale", now - dt.timedelta(days=30))
    assert await hold_expiry.expire_once(database, clock) == 1 and await _voided(database, stale)


async def test_rows_the_sweep_cannot_void_hold_up_no_hold_behind_them(gateway, database, monkeypatch):
    """More rows naming no hold (a hand-edited table) than a batch, due before a real hold: the sweep
    reads on past them, never the same row twice, and voids the hold."""
    monkeypatch.setattr(hold_expiry, "BATCH_MAX", 2)
    user = await register(gateway, "junk@example.com")
    await deposit(database, user["id"], 10)
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    await database.execute("INSERT INTO open_holds (hold_id, expires_at, amount_micro)"
                           " SELECT -n, $1, 1 FROM generate_series(1, 5) n", start)
    try:
        real = await _hold(database, user["id"], "real", start + dt.timedelta(minutes=1))
        clock = FixedClock(start + dt.timedelta(hours=1))
        assert await hold_expiry.expire_once(database, clock) == 1 and await _voided(database, real)
    finally:
        await database.execute("DELETE FROM open_holds WHERE hold_id < 0")
