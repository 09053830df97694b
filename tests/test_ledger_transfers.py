"""Transfers against real PostgreSQL: moves, holds, idempotency, overdraft and the append-only tables."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

import ledger
from ledger import (AMOUNT_MAX_MICRO, HoldExpired, HoldNotFound, HoldResolved, IdempotencyConflict,
                    InsufficientBalance, InvalidAmount, LedgerError)
from tests.test_ledger_helpers import (NOW, PRICE_MICRO, expire, move, new_account, posted, resolve,
                                       snapshot, sums, transfer_count)

LATER = NOW + dt.timedelta(minutes=5)


@pytest.fixture
async def revenue(database) -> int:
    return await ledger.system_id(database, "revenue")


@pytest.fixture
async def clearing(database) -> int:
    return await ledger.system_id(database, "payment_clearing")


@pytest.fixture
async def alice(database) -> int:
    """A user account holding 10 credits."""
    return await new_account(database, "alice", deposit_micro=10 * PRICE_MICRO)


async def purchase(pool, alice: int, revenue: int, amount_micro: int = PRICE_MICRO, key: str = "buy-1",
                   **extra) -> ledger.Transfer:
    return await move(pool, key=key, debit=alice, credit=revenue, amount_micro=amount_micro,
                      kind="purchase", **extra)


async def hold(pool, alice: int, revenue: int, amount_micro: int = 3 * PRICE_MICRO, key: str = "hold-1",
               until: dt.datetime = LATER) -> ledger.Transfer:
    return await move(pool, key=key, debit=alice, credit=revenue, amount_micro=amount_micro,
                      kind="usage", hold_until=until)


# Posted moves


async def test_a_deposit_credits_the_user_and_debits_payment_clearing(database, alice, clearing):
    assert await posted(database, alice) == 10 * PRICE_MICRO
    assert await posted(database, clearing) == -10 * PRICE_MICRO


async def test_a_purchase_moves_the_amount_from_the_user_to_revenue(database, alice, revenue):
    await purchase(database, alice, revenue, 4 * PRICE_MICRO)
    assert (await posted(database, alice), await posted(database, revenue)) == (6 * PRICE_MICRO, 4 * PRICE_MICRO)


async def test_a_move_returns_the_stored_transfer(database, alice, revenue):
    transfer = await purchase(database, alice, revenue, metadata={"token": 7}, description="1h token")
    row = await database.fetchrow("SELECT * FROM transfers WHERE id = $1", transfer.id)
    assert (row["idempotency_key"], row["debit_account_id"], row["credit_account_id"], row["amount_micro"],
            row["phase"], row["kind"], row["description"], row["created_at"]) == (
        "buy-1", alice, revenue, PRICE_MICRO, "posted", "purchase", "1h token", NOW)
    assert (transfer.metadata, transfer.replayed, transfer.pending_id) == ({"token": 7}, False, None)


async def test_the_books_balance_after_every_kind_of_move(database, alice, revenue):
    await purchase(database, alice, revenue)
    held = await hold(database, alice, revenue)
    await resolve(database, key="post-1", hold_id=held.id, post_micro=PRICE_MICRO)
    await hold(database, alice, revenue, key="hold-2")
    totals = await database.fetchrow(
        "SELECT sum(debits_posted) AS dp, sum(credits_posted) AS cp, sum(debits_pending) AS dh,"
        " sum(credits_pending) AS ch FROM accounts")
    assert (totals["dp"], totals["dh"]) == (totals["cp"], totals["ch"])


async def test_a_transfer_to_the_same_account_is_refused(database, alice):
    with pytest.raises(LedgerError):
        await move(database, key="self", debit=alice, credit=alice, amount_micro=1, kind="adjustment")
    assert await transfer_count(database) == 1  # the deposit


async def test_a_transfer_from_an_unknown_account_is_refused_and_writes_nothing(database, alice, revenue):
    before = await snapshot(database)
    with pytest.raises(LedgerError, match="unknown account"):
        await move(database, key="ghost", debit=alice + 1000, credit=revenue, amount_micro=1, kind="purchase")
    assert await snapshot(database) == before


async def test_a_transfer_to_an_unknown_account_is_refused_and_writes_nothing(database, alice):
    before = await snapshot(database)
    with pytest.raises(LedgerError, match="unknown account"):
        await move(database, key="ghost", debit=alice, credit=alice + 1000, amount_micro=1, kind="purchase")
    assert await snapshot(database) == before


@pytest.mark.parametrize("amount", [0, -1, -PRICE_MICRO, True, False, 1.0, 0.5, "1", None,
                                    AMOUNT_MAX_MICRO + 1], ids=repr)
async def test_invalid_amounts_are_refused_and_write_nothing(database, alice, revenue, amount):
    before = await snapshot(database)
    with pytest.raises(InvalidAmount):
        await purchase(database, alice, revenue, amount)
    assert await snapshot(database) == before


async def test_the_largest_amount_is_accepted(database, revenue, clearing):
    await move(database, key="big", debit=clearing, credit=revenue, amount_micro=AMOUNT_MAX_MICRO,
               kind="adjustment")
    assert await posted(database, revenue) == AMOUNT_MAX_MICRO


@pytest.mark.parametrize("key", ["", "k" * 201, None, 7], ids=repr)
async def test_a_missing_or_overlong_idempotency_key_is_refused(database, alice, revenue, key):
    before = await snapshot(database)
    with pytest.raises(LedgerError):
        await purchase(database, alice, revenue, key=key)
    assert await snapshot(database) == before


# Idempotency


async def test_a_replay_returns_the_original_transfer_marked_replayed(database, alice, revenue):
    first = await purchase(database, alice, revenue)
    again = await purchase(database, alice, revenue, now=NOW + dt.timedelta(seconds=30))
    assert (again.id, again.replayed, again.created_at) == (first.id, True, NOW)


async def test_a_replay_moves_no_money_and_writes_no_row(database, alice, revenue):
    await purchase(database, alice, revenue)
    before = await snapshot(database)
    await purchase(database, alice, revenue)
    assert await snapshot(database) == before


async def test_a_replay_succeeds_even_when_the_balance_is_now_too_low(database, alice, revenue):
    first = await purchase(database, alice, revenue, 10 * PRICE_MICRO)
    assert (await purchase(database, alice, revenue, 10 * PRICE_MICRO)).id == first.id


@pytest.mark.parametrize("change", [
    {"amount_micro": 2 * PRICE_MICRO},
    {"kind": "usage"},
    {"metadata": {"token": 8}},
    {"description": "24h token"},
    {"user_id": None},
    {"hold_until": LATER},
], ids=lambda change: next(iter(change)))
async def test_the_same_key_with_other_content_is_a_conflict_and_changes_nothing(
        database, alice, revenue, change):
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", alice)
    fields = {"key": "buy-1", "debit": alice, "credit": revenue, "amount_micro": PRICE_MICRO,
              "kind": "purchase", "metadata": {"token": 7}, "description": "1h token", "user_id": user_id}
    await move(database, **fields)
    before = await snapshot(database)
    with pytest.raises(IdempotencyConflict):
        await move(database, **{**fields, **change})
    assert await snapshot(database) == before


async def test_the_same_key_on_other_accounts_is_a_conflict(database, alice, revenue):
    bob = await new_account(database, "bob", deposit_micro=PRICE_MICRO)
    await purchase(database, alice, revenue)
    before = await snapshot(database)
    with pytest.raises(IdempotencyConflict):
        await purchase(database, bob, revenue)
    assert await snapshot(database) == before


async def test_a_hold_replayed_with_its_expiry_in_another_time_zone_is_the_same_request(
        database, alice, revenue):
    first = await hold(database, alice, revenue)
    moscow = LATER.astimezone(dt.timezone(dt.timedelta(hours=3)))
    assert (await hold(database, alice, revenue, until=moscow)).id == first.id


async def test_a_resolution_cannot_reuse_the_key_of_a_move(database, alice, revenue):
    held = await hold(database, alice, revenue)
    before = await snapshot(database)
    with pytest.raises(IdempotencyConflict):
        await resolve(database, key="hold-1", hold_id=held.id)
    assert await snapshot(database) == before


# Overdraft


async def test_a_purchase_beyond_the_balance_raises_and_changes_nothing(database, alice, revenue):
    before = await snapshot(database)
    with pytest.raises(InsufficientBalance):
        await purchase(database, alice, revenue, 10 * PRICE_MICRO + 1)
    assert await snapshot(database) == before


async def test_a_purchase_of_exactly_the_balance_leaves_zero(database, alice, revenue):
    await purchase(database, alice, revenue, 10 * PRICE_MICRO)
    assert await posted(database, alice) == 0


async def test_an_account_without_money_cannot_spend_one_micro_credit(database, revenue):
    empty = await new_account(database, "empty")
    with pytest.raises(InsufficientBalance):
        await purchase(database, empty, revenue, 1)


async def test_an_overdraft_lets_the_balance_go_that_far_below_zero_and_no_further(database, alice, revenue):
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", alice)
    await ledger.set_overdraft(database, user_id, 2 * PRICE_MICRO)
    await purchase(database, alice, revenue, 12 * PRICE_MICRO)
    with pytest.raises(InsufficientBalance):
        await purchase(database, alice, revenue, 1, key="buy-2")
    assert (await ledger.balance(database, user_id)).posted_micro == -2 * PRICE_MICRO


async def test_system_accounts_may_go_below_zero(database, alice, clearing):
    assert await posted(database, clearing) < 0


# Holds


async def test_a_hold_reduces_the_available_balance_but_not_the_posted_one(database, alice, revenue):
    await hold(database, alice, revenue, 3 * PRICE_MICRO)
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", alice)
    balance = await ledger.balance(database, user_id)
    assert (balance.posted_micro, balance.held_micro, balance.available_micro) == (
        10 * PRICE_MICRO, 3 * PRICE_MICRO, 7 * PRICE_MICRO)


async def test_a_hold_shows_as_incoming_on_the_credit_side(database, alice, revenue):
    await hold(database, alice, revenue, 3 * PRICE_MICRO)
    assert (await sums(database, revenue))["credits_pending"] == 3 * PRICE_MICRO


async def test_held_money_cannot_be_spent_again(database, alice, revenue):
    await hold(database, alice, revenue, 8 * PRICE_MICRO)
    with pytest.raises(InsufficientBalance):
        await purchase(database, alice, revenue, 3 * PRICE_MICRO)


async def test_a_hold_beyond_the_available_balance_is_refused(database, alice, revenue):
    before = await snapshot(database)
    with pytest.raises(InsufficientBalance):
        await hold(database, alice, revenue, 10 * PRICE_MICRO + 1)
    assert await snapshot(database) == before


async def test_posting_a_whole_hold_moves_the_held_amount(database, alice, revenue):
    held = await hold(database, alice, revenue, 3 * PRICE_MICRO)
    await resolve(database, key="post", hold_id=held.id, post_micro=3 * PRICE_MICRO)
    assert (await sums(database, alice), await posted(database, revenue)) == (
        {"debits_posted": 3 * PRICE_MICRO, "credits_posted": 10 * PRICE_MICRO, "debits_pending": 0,
         "credits_pending": 0, "posted": 7 * PRICE_MICRO, "available": 7 * PRICE_MICRO}, 3 * PRICE_MICRO)


async def test_a_partial_post_releases_the_rest_of_the_hold(database, alice, revenue):
    held = await hold(database, alice, revenue, 3 * PRICE_MICRO)
    posted_transfer = await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO)
    after = await sums(database, alice)
    assert (after["posted"], after["debits_pending"], await posted(database, revenue)) == (
        9 * PRICE_MICRO, 0, PRICE_MICRO)
    assert (posted_transfer.phase, posted_transfer.pending_id, posted_transfer.amount_micro) == (
        "post_pending", held.id, PRICE_MICRO)


async def test_posting_zero_releases_the_whole_hold(database, alice, revenue):
    held = await hold(database, alice, revenue)
    await resolve(database, key="post", hold_id=held.id, post_micro=0)
    assert (await sums(database, alice))["available"] == 10 * PRICE_MICRO


@pytest.mark.parametrize("amount", [3 * PRICE_MICRO + 1, -1, True, 1.5], ids=repr)
async def test_posting_more_than_held_or_a_non_integer_is_refused(database, alice, revenue, amount):
    held = await hold(database, alice, revenue, 3 * PRICE_MICRO)
    before = await snapshot(database)
    with pytest.raises(InvalidAmount):
        await resolve(database, key="post", hold_id=held.id, post_micro=amount)
    assert await snapshot(database) == before


async def test_voiding_a_hold_releases_it_and_moves_nothing(database, alice, revenue):
    held = await hold(database, alice, revenue)
    void = await resolve(database, key="void", hold_id=held.id)
    assert (await sums(database, alice))["available"] == 10 * PRICE_MICRO
    assert (await sums(database, revenue))["credits_pending"] == 0
    assert (void.phase, void.amount_micro) == ("void_pending", held.amount_micro)


@pytest.mark.parametrize("first, second", [(0, None), (None, 0), (PRICE_MICRO, PRICE_MICRO), (None, None)])
async def test_a_hold_is_resolved_only_once(database, alice, revenue, first, second):
    held = await hold(database, alice, revenue)
    await resolve(database, key="first", hold_id=held.id, post_micro=first)
    before = await snapshot(database)
    with pytest.raises(HoldResolved):
        await resolve(database, key="second", hold_id=held.id, post_micro=second)
    assert await snapshot(database) == before


async def test_a_resolution_replayed_with_its_key_returns_the_original(database, alice, revenue):
    held = await hold(database, alice, revenue)
    first = await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO)
    before = await snapshot(database)
    again = await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO)
    assert (again.id, again.replayed, await snapshot(database)) == (first.id, True, before)


async def test_a_resolution_replayed_with_another_amount_is_a_conflict(database, alice, revenue):
    held = await hold(database, alice, revenue)
    await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO)
    with pytest.raises(IdempotencyConflict):
        await resolve(database, key="post", hold_id=held.id, post_micro=2 * PRICE_MICRO)


async def test_posting_an_expired_hold_is_refused(database, alice, revenue):
    held = await hold(database, alice, revenue)
    before = await snapshot(database)
    with pytest.raises(HoldExpired):
        await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO, now=LATER)
    assert await snapshot(database) == before


async def test_voiding_an_expired_hold_is_allowed(database, alice, revenue):
    held = await hold(database, alice, revenue)
    await resolve(database, key="void", hold_id=held.id, now=LATER + dt.timedelta(hours=1))
    assert (await sums(database, alice))["available"] == 10 * PRICE_MICRO


async def test_resolving_an_unknown_hold_is_refused(database, alice):
    with pytest.raises(HoldNotFound):
        await resolve(database, key="post", hold_id=999_999, post_micro=1)


async def test_a_posted_transfer_is_not_a_hold(database, alice, revenue):
    bought = await purchase(database, alice, revenue)
    with pytest.raises(HoldNotFound):
        await resolve(database, key="void", hold_id=bought.id)


async def test_a_resolution_is_not_a_hold(database, alice, revenue):
    held = await hold(database, alice, revenue)
    void = await resolve(database, key="void", hold_id=held.id)
    with pytest.raises(HoldNotFound):
        await resolve(database, key="void-again", hold_id=void.id)


# Expiry


async def test_expire_holds_voids_only_the_holds_past_their_expiry(database, alice, revenue):
    await hold(database, alice, revenue, PRICE_MICRO, key="early", until=NOW + dt.timedelta(minutes=1))
    await hold(database, alice, revenue, PRICE_MICRO, key="late", until=NOW + dt.timedelta(minutes=10))
    assert await expire(database, NOW + dt.timedelta(minutes=1)) == 1
    assert (await sums(database, alice))["debits_pending"] == PRICE_MICRO


async def test_expire_holds_leaves_resolved_holds_alone(database, alice, revenue):
    held = await hold(database, alice, revenue)
    await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO)
    assert await expire(database, LATER) == 0
    assert await posted(database, revenue) == PRICE_MICRO


async def test_expire_holds_run_twice_voids_each_hold_once(database, alice, revenue):
    for number in range(3):
        await hold(database, alice, revenue, PRICE_MICRO, key=f"hold-{number}")
    assert [await expire(database, LATER), await expire(database, LATER)] == [3, 0]
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE phase = 'void_pending'") == 3


async def test_an_expired_hold_is_voided_with_a_recognisable_key(database, alice, revenue):
    held = await hold(database, alice, revenue)
    await expire(database, LATER)
    row = await database.fetchrow("SELECT * FROM transfers WHERE pending_id = $1", held.id)
    assert (row["phase"], row["idempotency_key"]) == ("void_pending", f"expire:{held.id}")


# The database's own guards


@pytest.fixture
async def raw(servers, database):
    """A plain connection, outside the ledger module, to try what the ledger never does."""
    connection = await asyncpg.connect(servers.database_url)
    yield connection
    await connection.close()


@pytest.mark.parametrize("statement", [
    "UPDATE transfers SET amount_micro = amount_micro + 1",
    "UPDATE transfers SET description = 'edited'",
    "DELETE FROM transfers",
    "TRUNCATE transfers CASCADE",
])
async def test_the_database_refuses_to_change_transfers(database, raw, alice, statement):
    before = await raw.fetch("SELECT * FROM transfers ORDER BY id")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await raw.execute(statement)
    assert await raw.fetch("SELECT * FROM transfers ORDER BY id") == before


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET action = 'edited'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
])
async def test_the_database_refuses_to_change_the_audit_log(database, raw, statement):
    await raw.execute("INSERT INTO audit_log (action, target_type) VALUES ('ledger.test', 'account')")
    before = await raw.fetch("SELECT * FROM audit_log ORDER BY id")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await raw.execute(statement)
    assert await raw.fetch("SELECT * FROM audit_log ORDER BY id") == before


async def test_the_database_refuses_a_user_balance_below_its_overdraft(database, raw, alice):
    with pytest.raises(asyncpg.CheckViolationError):
        await raw.execute("UPDATE accounts SET debits_posted = credits_posted + 1 WHERE id = $1", alice)
    assert await posted(raw, alice) == 10 * PRICE_MICRO


async def test_the_database_refuses_holds_beyond_a_user_balance(database, raw, alice):
    with pytest.raises(asyncpg.CheckViolationError):
        await raw.execute("UPDATE accounts SET debits_pending = credits_posted + 1 WHERE id = $1", alice)
    assert (await sums(raw, alice))["debits_pending"] == 0


async def test_the_database_refuses_a_resolution_of_an_already_resolved_hold(database, raw, alice, revenue):
    held = await hold(database, alice, revenue)
    await resolve(database, key="void", hold_id=held.id)
    with pytest.raises(asyncpg.UniqueViolationError):
        await raw.execute(
            "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,"
            " amount_micro, phase, kind, pending_id) VALUES ('sneak', '', $1, $2, 0, 'void_pending',"
            " 'usage', $3)", alice, revenue, held.id)
