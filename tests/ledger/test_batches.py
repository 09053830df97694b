"""Group commit (ledger.batches, migration 0015, decision 0021) against real PostgreSQL: many callers'
moves and resolutions in one call of ledger_batch, each item checked and answered on its own, the
accounts written once per batch, and no deadlock between batches of several workers and direct moves."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

import ledger
from tests.support.ledger import NOW, PRICE_MICRO, move, new_account, posted, sums

LATER = NOW + dt.timedelta(minutes=5)
CONNECTIONS_MAX = 20


@pytest.fixture
async def pool(servers, database):
    wide = await asyncpg.create_pool(servers.database_url, min_size=2, max_size=CONNECTIONS_MAX)
    yield wide
    await wide.close()


@pytest.fixture
async def batcher(pool) -> ledger.Batcher:
    return ledger.Batcher(pool)


async def gather_outcomes(calls) -> list:
    return await asyncio.gather(*calls, return_exceptions=True)


def outcome_names(outcomes: list) -> dict[str, int]:
    names: dict[str, int] = {}
    for outcome in outcomes:
        names[type(outcome).__name__] = names.get(type(outcome).__name__, 0) + 1
    return names


async def test_concurrent_moves_go_as_one_call_and_each_gets_its_own_transfer(pool, batcher):
    revenue = await ledger.system_id(pool, "revenue")
    buyers = [await new_account(pool, f"buyer{number}", deposit_micro=PRICE_MICRO) for number in range(50)]
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                     kind="purchase", now=NOW) for number, buyer in enumerate(buyers))
    assert (batcher.batches, batcher.items) == (1, 50)
    assert [transfer.idempotency_key for transfer in outcomes] == [f"buy-{number}" for number in range(50)]
    assert await posted(pool, revenue) == 50 * PRICE_MICRO
    assert all([await posted(pool, buyer) == 0 for buyer in buyers])


async def test_a_hundred_batched_purchases_spend_exactly_the_balance_first_come_first_served(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                     kind="purchase", now=NOW) for number in range(100))
    assert [type(o).__name__ for o in outcomes] == ["Transfer"] * 10 + ["InsufficientBalance"] * 90
    assert (await posted(pool, buyer), await posted(pool, revenue)) == (0, 10 * PRICE_MICRO)


async def test_a_hundred_batched_holds_reserve_exactly_the_balance(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        batcher.move(key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                     kind="usage", now=NOW, hold_until=LATER) for number in range(100))
    assert outcome_names(outcomes) == {"Transfer": 10, "InsufficientBalance": 90}
    assert (await sums(pool, buyer))["available"] == 0
    assert (await sums(pool, revenue))["credits_pending"] == 10 * PRICE_MICRO


async def test_twins_in_one_batch_write_one_transfer_and_other_content_is_a_conflict(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    twins = [batcher.move(key="double-click", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                          kind="purchase", now=NOW) for _ in range(5)]
    other = batcher.move(key="double-click", debit=buyer, credit=revenue, amount_micro=2 * PRICE_MICRO,
                         kind="purchase", now=NOW)
    outcomes = await gather_outcomes([*twins, other])
    assert batcher.batches == 1
    assert len({transfer.id for transfer in outcomes[:5]}) == 1
    assert [transfer.replayed for transfer in outcomes[:5]] == [False, True, True, True, True]
    assert isinstance(outcomes[5], ledger.IdempotencyConflict)
    assert await posted(pool, buyer) == 9 * PRICE_MICRO


async def test_resolutions_in_one_batch_post_a_hold_once(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    held = await batcher.move(key="hold", debit=buyer, credit=revenue, amount_micro=3 * PRICE_MICRO,
                              kind="usage", now=NOW, hold_until=LATER)
    outcomes = await gather_outcomes(
        batcher.resolve(key=f"post-{number}", hold_id=held.id, now=NOW, post_micro=PRICE_MICRO)
        for number in range(10))
    assert outcome_names(outcomes) == {"Transfer": 1, "HoldResolved": 9}
    assert (await posted(pool, buyer), (await sums(pool, buyer))["debits_pending"]) == (9 * PRICE_MICRO, 0)
    assert (await sums(pool, revenue))["credits_pending"] == 0


async def test_every_refusal_of_a_resolution_is_the_items_own(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    holds = [await batcher.move(key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                                kind="usage", now=NOW, hold_until=NOW + dt.timedelta(seconds=1))
             for number in range(3)]
    purchase = await move(pool, key="bought", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                          kind="purchase")
    later = NOW + dt.timedelta(seconds=2)
    outcomes = await gather_outcomes([
        batcher.resolve(key="too-much", hold_id=holds[0].id, now=NOW, post_micro=PRICE_MICRO + 1),
        batcher.resolve(key="late", hold_id=holds[1].id, now=later, post_micro=PRICE_MICRO),
        batcher.resolve(key="no-hold", hold_id=purchase.id, now=NOW),
        batcher.resolve(key="bought", hold_id=holds[2].id, now=NOW),
        batcher.resolve(key="late-but-expiring", hold_id=holds[1].id, now=later, post_micro=PRICE_MICRO,
                        expiring=True),
        batcher.resolve(key="fine", hold_id=holds[0].id, now=NOW, post_micro=PRICE_MICRO // 2),
    ])
    assert [type(o).__name__ for o in outcomes] == [
        "InvalidAmount", "HoldExpired", "HoldNotFound", "IdempotencyConflict", "Transfer", "Transfer"]
    assert await posted(pool, buyer) == 10 * PRICE_MICRO - PRICE_MICRO - PRICE_MICRO - PRICE_MICRO // 2
    assert (await sums(pool, buyer))["debits_pending"] == PRICE_MICRO
    assert (await ledger.reconcile(pool)).ok


async def test_an_item_that_fails_in_the_database_fails_alone(pool, batcher):
    """A user id no user has breaks the transfer's foreign key: that item answers an error, written
    nowhere; the items around it go through."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase",
                     now=NOW, user_id=10**12 if number == 1 else None) for number in range(3))
    assert batcher.batches == 1
    assert [type(o).__name__ for o in outcomes] == ["Transfer", "LedgerError", "Transfer"]
    assert "23503" in str(outcomes[1])  # foreign_key_violation
    assert await posted(pool, buyer) == 8 * PRICE_MICRO
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE idempotency_key = 'buy-1'") == 0


async def test_a_batch_writes_each_account_once(pool, batcher):
    """Fifty holds of fifty users credit revenue fifty times: the revenue row gets one new version."""
    revenue = await ledger.system_id(pool, "revenue")
    buyers = [await new_account(pool, f"buyer{number}", deposit_micro=PRICE_MICRO) for number in range(50)]
    await pool.execute("""
        CREATE TABLE account_writes (account_id bigint);
        CREATE FUNCTION account_written() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO account_writes VALUES (NEW.id); RETURN NULL; END $$;
        CREATE TRIGGER account_written AFTER UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION account_written();""")
    try:
        await gather_outcomes(
            batcher.move(key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                         kind="usage", now=NOW, hold_until=LATER) for number, buyer in enumerate(buyers))
        writes = await pool.fetch("SELECT account_id, count(*) AS writes FROM account_writes GROUP BY account_id")
    finally:
        await pool.execute("DROP TRIGGER account_written ON accounts; DROP FUNCTION account_written();"
                           " DROP TABLE account_writes")
    assert {row["account_id"]: row["writes"] for row in writes} == {account: 1 for account in [revenue, *buyers]}
    assert (await sums(pool, revenue))["credits_pending"] == 50 * PRICE_MICRO


async def test_batches_of_two_workers_and_direct_moves_never_deadlock(pool):
    """Two workers' batches and direct moves, in both directions between the same accounts, at once."""
    first = await new_account(pool, "first", deposit_micro=100 * PRICE_MICRO)
    second = await new_account(pool, "second", deposit_micro=100 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    workers = [ledger.Batcher(pool, items_max=7), ledger.Batcher(pool, items_max=5)]
    calls = []
    for number in range(120):
        debit, credit = (first, second) if number % 2 else (second, first)
        fields = {"key": f"swap-{number}", "debit": debit, "credit": credit, "amount_micro": PRICE_MICRO,
                  "kind": "adjustment"}
        if number % 3 == 0:
            calls.append(move(pool, **fields))
        else:
            calls.append(workers[number % 2].move(now=NOW, **fields))
        calls.append(workers[(number + 1) % 2].move(key=f"hold-{number}", debit=debit, credit=revenue,
                                                    amount_micro=1, kind="usage", now=NOW, hold_until=LATER))
    outcomes = await asyncio.wait_for(gather_outcomes(calls), timeout=60)
    assert outcome_names(outcomes) == {"Transfer": 240}
    assert sum(worker.batches for worker in workers) > 2
    assert (await posted(pool, first), await posted(pool, second)) == (100 * PRICE_MICRO, 100 * PRICE_MICRO)
    assert (await ledger.reconcile(pool)).ok


async def test_a_batch_racing_the_expiry_sweep_resolves_each_hold_once(pool, batcher):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    holds = [await batcher.move(key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                                kind="usage", now=NOW, hold_until=NOW + dt.timedelta(seconds=1))
             for number in range(10)]
    later = NOW + dt.timedelta(seconds=1)

    async def sweep() -> int:
        async with pool.acquire() as connection:
            return await ledger.expire_holds(connection, now=later)

    posts = [batcher.resolve(key=f"settle-{hold.id}", hold_id=hold.id, now=later, post_micro=PRICE_MICRO,
                             expiring=True) for hold in holds]
    outcomes = await gather_outcomes([*posts, sweep(), sweep()])
    settled = [o for o in outcomes[:10] if isinstance(o, ledger.Transfer)]
    assert all(isinstance(o, (ledger.Transfer, ledger.HoldResolved)) for o in outcomes[:10]), outcomes
    assert len(settled) + sum(outcomes[10:]) == 10
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE pending_id IS NOT NULL") == 10
    assert await posted(pool, buyer) == 10 * PRICE_MICRO - len(settled) * PRICE_MICRO


async def test_an_outage_fails_every_item_of_the_batch(servers, database):
    revenue = await ledger.system_id(database, "revenue")
    buyer = await new_account(database, "buyer", deposit_micro=10 * PRICE_MICRO)
    closed = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1)
    await closed.close()
    batcher = ledger.Batcher(closed)
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                     kind="purchase", now=NOW) for number in range(3))
    assert all(isinstance(o, asyncpg.InterfaceError) for o in outcomes), outcomes
    assert await posted(database, buyer) == 10 * PRICE_MICRO
