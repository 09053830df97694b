"""The ledger's gauges on /metrics: open holds, the backlog past expiry, and reconcile drift."""

from __future__ import annotations

import datetime as dt

import ledger
from tests.support.accounts import deposit, register
from tests.support.metrics import eventually_equals, gauge


async def hold(database, user_id: int, key: str, credits: int, until: dt.datetime) -> ledger.Transfer:
    account = await ledger.user_account(database, user_id)
    revenue = await ledger.system_id(database, "revenue")
    async with database.acquire() as connection:
        return await ledger.move(connection, key=key, debit=account, credit=revenue,
                                 amount_micro=credits * ledger.MICRO_PER_CREDIT, kind="usage",
                                 now=dt.datetime.now(dt.timezone.utc), user_id=user_id, hold_until=until)


async def test_open_holds_and_those_past_expiry_are_counted(gateway_factory, database):
    """The expiry sweep is slowed down, so an expired hold stays open: the backlog gauge shows it."""
    gateway = await gateway_factory(watch_interval_s=0.05, hold_expiry_interval_s=3600)
    user = await register(gateway, "held@example.com")
    await deposit(database, user["id"], 10)
    now = dt.datetime.now(dt.timezone.utc)
    await hold(database, user["id"], "open", 2, now + dt.timedelta(hours=1))
    await hold(database, user["id"], "overdue", 3, now - dt.timedelta(seconds=1))
    assert await eventually_equals(gateway, "tollgate_ledger_open_holds", 2.0) == 2.0
    assert await gauge(gateway, "tollgate_ledger_expired_open_holds") == 1.0
    assert await gauge(gateway, "tollgate_ledger_held_micro") == 5_000_000.0
    async with database.acquire() as connection:
        await ledger.expire_holds(connection, now=dt.datetime.now(dt.timezone.utc))
    assert await eventually_equals(gateway, "tollgate_ledger_expired_open_holds", 0.0) == 0.0
    assert await gauge(gateway, "tollgate_ledger_open_holds") == 1.0


async def test_a_balance_that_drifts_from_its_transfers_shows_on_the_drift_gauge(gateway_factory, database):
    """A stored balance edited behind the ledger's back (then put back, for the fixture's reconcile)."""
    user = await register(await gateway_factory(), "drift@example.com")
    await deposit(database, user["id"], 10)
    await database.execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE user_id = $1", user["id"])
    try:
        gateway = await gateway_factory(watch_interval_s=0.05, reconcile_interval_s=0.05)
        # Two problems: the account's stored sum, and the books' posted totals.
        assert await eventually_equals(gateway, "tollgate_ledger_reconcile_problems", 2.0) == 2.0
        checked = await gauge(gateway, "tollgate_ledger_reconcile_checked_timestamp_seconds")
        assert checked is not None and checked > 0
    finally:
        await database.execute("UPDATE accounts SET credits_posted = credits_posted - 1 WHERE user_id = $1",
                               user["id"])
    assert await eventually_equals(gateway, "tollgate_ledger_reconcile_problems", 0.0) == 0.0
