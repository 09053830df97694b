"""The ledger under concurrency: many transactions at once never overspend, double-write or deadlock."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

import ledger
from ledger import IdempotencyConflict
from tests.test_ledger_helpers import NOW, PRICE_MICRO, expire, move, new_account, posted, sums

CONNECTIONS_MAX = 20


@pytest.fixture
async def pool(servers, database):
    """A pool wide enough for real contention: every concurrent call gets its own connection."""
    wide = await asyncpg.create_pool(servers.database_url, min_size=CONNECTIONS_MAX,
                                     max_size=CONNECTIONS_MAX)
    yield wide
    await wide.close()


async def gather_outcomes(calls) -> list:
    """Run the calls at once; each result is a Transfer or the exception it raised."""
    return await asyncio.gather(*calls, return_exceptions=True)


def outcome_names(outcomes: list) -> dict[str, int]:
    names: dict[str, int] = {}
    for outcome in outcomes:
        name = type(outcome).__name__
        names[name] = names.get(name, 0) + 1
    return names


async def test_a_hundred_concurrent_purchases_spend_exactly_the_balance(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        move(pool, key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
             kind="purchase") for number in range(100))
    assert outcome_names(outcomes) == {"Transfer": 10, "InsufficientBalance": 90}
    assert (await posted(pool, buyer), await posted(pool, revenue)) == (0, 10 * PRICE_MICRO)
    assert (await ledger.reconcile(pool)).ok


async def test_a_hundred_concurrent_holds_reserve_exactly_the_balance(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        move(pool, key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
             kind="usage", hold_until=NOW + dt.timedelta(minutes=5)) for number in range(100))
    assert outcome_names(outcomes) == {"Transfer": 10, "InsufficientBalance": 90}
    assert (await sums(pool, buyer))["available"] == 0


async def test_concurrent_twins_with_one_key_write_one_transfer(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        move(pool, key="double-click", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
             kind="purchase") for _ in range(CONNECTIONS_MAX))
    assert len({transfer.id for transfer in outcomes}) == 1
    assert sorted(transfer.replayed for transfer in outcomes) == [False] + [True] * (CONNECTIONS_MAX - 1)
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE idempotency_key = 'double-click'") == 1
    assert await posted(pool, buyer) == 9 * PRICE_MICRO


async def test_one_key_raced_for_different_purchases_is_written_once(pool):
    revenue = await ledger.system_id(pool, "revenue")
    buyers = [await new_account(pool, f"buyer{number}", deposit_micro=PRICE_MICRO)
              for number in range(CONNECTIONS_MAX)]
    outcomes = await gather_outcomes(
        move(pool, key="shared", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase")
        for buyer in buyers)
    assert outcome_names(outcomes) == {"Transfer": 1, "IdempotencyConflict": CONNECTIONS_MAX - 1}
    assert await posted(pool, revenue) == PRICE_MICRO


async def test_racing_a_key_across_unrelated_accounts_raises_only_ledger_errors(pool):
    """Twenty different transfers, each between its own pair of accounts, all claim one key."""
    pairs = [(await new_account(pool, f"payer{number}", deposit_micro=PRICE_MICRO),
              await new_account(pool, f"payee{number}")) for number in range(CONNECTIONS_MAX)]
    outcomes = await gather_outcomes(
        move(pool, key="one-key", debit=payer, credit=payee, amount_micro=PRICE_MICRO, kind="adjustment")
        for payer, payee in pairs)
    assert outcome_names(outcomes) == {"Transfer": 1, "IdempotencyConflict": CONNECTIONS_MAX - 1}
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE idempotency_key = 'one-key'") == 1


async def test_a_key_committed_elsewhere_while_a_move_waits_on_it_is_a_conflict(pool):
    """The other transfer shares no account, so only the unique key makes the two meet."""
    payer, payee = (await new_account(pool, "payer", deposit_micro=PRICE_MICRO),
                    await new_account(pool, "payee"))
    other_payer, other_payee = (await new_account(pool, "other-payer", deposit_micro=PRICE_MICRO),
                                await new_account(pool, "other-payee"))
    async with pool.acquire() as first:
        open_transaction = first.transaction()
        await open_transaction.start()
        await ledger.move(first, key="one-key", debit=payer, credit=payee, amount_micro=PRICE_MICRO,
                          kind="adjustment", now=NOW)
        second = asyncio.create_task(move(pool, key="one-key", debit=other_payer, credit=other_payee,
                                          amount_micro=PRICE_MICRO, kind="adjustment"))
        await wait_for_a_lock_wait(pool)
        await open_transaction.commit()
        with pytest.raises(IdempotencyConflict):
            await second
    assert (await posted(pool, payee), await posted(pool, other_payee)) == (PRICE_MICRO, 0)


async def test_a_key_committed_elsewhere_while_a_resolution_waits_on_it_is_a_conflict(pool):
    payer, payee = (await new_account(pool, "payer", deposit_micro=PRICE_MICRO),
                    await new_account(pool, "payee"))
    holder = await new_account(pool, "holder", deposit_micro=PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    held = await move(pool, key="hold", debit=holder, credit=revenue, amount_micro=PRICE_MICRO,
                      kind="usage", hold_until=NOW + dt.timedelta(minutes=5))
    async with pool.acquire() as first:
        open_transaction = first.transaction()
        await open_transaction.start()
        await ledger.move(first, key="one-key", debit=payer, credit=payee, amount_micro=PRICE_MICRO,
                          kind="adjustment", now=NOW)
        second = asyncio.create_task(resolve_in(pool, key="one-key", hold_id=held.id))
        await wait_for_a_lock_wait(pool)
        await open_transaction.commit()
        with pytest.raises(IdempotencyConflict):
            await second
    assert (await sums(pool, holder))["debits_pending"] == PRICE_MICRO


async def wait_for_a_lock_wait(pool, seconds_max: float = 5.0) -> None:
    """Until some backend waits on a lock (here: on the uncommitted unique key)."""
    for _ in range(int(seconds_max * 100)):
        if await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no backend started waiting on a lock")


async def test_transfers_in_both_directions_between_two_accounts_never_deadlock(pool):
    first = await new_account(pool, "first", deposit_micro=100 * PRICE_MICRO)
    second = await new_account(pool, "second", deposit_micro=100 * PRICE_MICRO)
    calls = []
    for number in range(100):
        debit, credit = (first, second) if number % 2 else (second, first)
        calls.append(move(pool, key=f"swap-{number}", debit=debit, credit=credit,
                          amount_micro=PRICE_MICRO, kind="adjustment"))
    outcomes = await gather_outcomes(calls)
    assert outcome_names(outcomes) == {"Transfer": 100}
    assert (await posted(pool, first), await posted(pool, second)) == (100 * PRICE_MICRO, 100 * PRICE_MICRO)


async def test_concurrent_resolutions_of_one_hold_post_it_once(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    held = await move(pool, key="hold", debit=buyer, credit=revenue, amount_micro=3 * PRICE_MICRO,
                      kind="usage", hold_until=NOW + dt.timedelta(minutes=5))
    outcomes = await gather_outcomes(
        resolve_in(pool, key=f"post-{number}", hold_id=held.id, post_micro=PRICE_MICRO)
        for number in range(CONNECTIONS_MAX))
    assert outcome_names(outcomes) == {"Transfer": 1, "HoldResolved": CONNECTIONS_MAX - 1}
    assert (await posted(pool, buyer), (await sums(pool, buyer))["debits_pending"]) == (9 * PRICE_MICRO, 0)


async def resolve_in(pool, **fields):
    async with pool.acquire() as connection:
        return await ledger.resolve(connection, now=NOW, **fields)


async def test_expire_holds_from_several_connections_voids_each_hold_once(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=100 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    for number in range(40):
        await move(pool, key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                   kind="usage", hold_until=NOW + dt.timedelta(seconds=number % 3))
    later = NOW + dt.timedelta(minutes=1)
    counts = await asyncio.gather(*(expire(pool, later) for _ in range(8)))
    assert sum(counts) == 40
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE phase = 'void_pending'") == 40
    assert (await sums(pool, buyer))["available"] == 100 * PRICE_MICRO


async def test_a_void_racing_expiry_resolves_each_hold_once(pool):
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    holds = [await move(pool, key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                        kind="usage", hold_until=NOW + dt.timedelta(seconds=1)) for number in range(10)]
    later = NOW + dt.timedelta(seconds=1)
    void = resolve_in(pool, key="void", hold_id=holds[0].id)  # an explicit void joins the race
    outcomes = await gather_outcomes([void, *(expire(pool, later) for _ in range(4))])
    assert not [outcome for outcome in outcomes if isinstance(outcome, BaseException)
                and not isinstance(outcome, ledger.HoldResolved)]
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE pending_id IS NOT NULL") == 10
    assert (await sums(pool, buyer))["available"] == 10 * PRICE_MICRO
