"""Transfers against real PostgreSQL: moves, holds, idempotency, bounds, SQL functions, concurrency, a model."""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import ledger
from gateway.accounts import users
from gateway.core import migrate
from ledger import (
    AMOUNT_MAX_MICRO, HoldExpired, HoldNotFound, HoldResolved, IdempotencyConflict, InsufficientBalance, InvalidAmount,
    LedgerError,
)
from ledger.transfers import _outcome
from tests.support.accounts import deposit, register
from tests.support.database import RESET_DATABASE, fresh_database
from tests.support.ledger import (
    NOW, PRICE_MICRO, expire, move, new_account, open_holds, posted, resolve, snapshot, sums, transfer_count,
)

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


async def test_the_table_of_open_holds_follows_each_hold_from_its_placing_to_its_resolution(database, alice, revenue):
    """Migration 0020: what the expiry sweep and the gauges read, kept by the database on every path."""
    soon = NOW + dt.timedelta(minutes=1)
    to_post = await hold(database, alice, revenue, key="to-post")
    to_void = await hold(database, alice, revenue, PRICE_MICRO, key="to-void")
    to_expire = await hold(database, alice, revenue, PRICE_MICRO, key="to-expire", until=soon)
    await hold(database, alice, revenue, PRICE_MICRO, key="to-expire", until=soon)  # a replay writes nothing
    await purchase(database, alice, revenue)  # a posted move is no hold
    assert await open_holds(database) == [(to_post.id, LATER, 3 * PRICE_MICRO), (to_void.id, LATER, PRICE_MICRO),
                                          (to_expire.id, soon, PRICE_MICRO)]
    await resolve(database, key="post", hold_id=to_post.id, post_micro=PRICE_MICRO)
    await resolve(database, key="void", hold_id=to_void.id)
    with pytest.raises(HoldResolved):
        await resolve(database, key="post-again", hold_id=to_post.id, post_micro=PRICE_MICRO)
    assert await open_holds(database) == [(to_expire.id, soon, PRICE_MICRO)]
    assert await expire(database, soon) == 1
    assert await open_holds(database) == []


async def ledger_before_0020(servers, name: str) -> str:
    """A new database migrated up to 0019 (the release before the table of open holds); its URL."""
    url = await fresh_database(servers, name)
    await migrate.apply(url, [migration for migration in migrate.discover() if migration.version < 20])
    return url


async def funded_user(connection: asyncpg.Connection, email: str) -> tuple[int, int, int]:
    """A user with 10 credits: (user id, their account, the revenue account)."""
    user_id = await users.ensure_client(connection, email=email)
    account = await ledger.user_account(connection, user_id)
    clearing = await ledger.system_id(connection, "payment_clearing")
    await ledger.move(connection, key=f"fund-{email}", debit=clearing, credit=account,
                      amount_micro=10 * PRICE_MICRO, kind="deposit", now=NOW, user_id=user_id)
    return user_id, account, await ledger.system_id(connection, "revenue")


async def test_migration_0020_fills_the_table_of_open_holds_with_the_holds_open_before_it(servers):
    """A ledger with history before the table existed: each open hold goes in, resolved ones do not."""
    url = await ledger_before_0020(servers, "open_holds_backfill")
    connection = await asyncpg.connect(url)
    try:
        user_id, alice, revenue = await funded_user(connection, "backfill@example.com")
        held = [await ledger.move(connection, key=f"hold-{n}", debit=alice, credit=revenue, amount_micro=PRICE_MICRO,
                                  kind="usage", now=NOW, user_id=user_id, hold_until=LATER) for n in range(3)]
        await ledger.resolve(connection, key="post", hold_id=held[0].id, now=NOW, post_micro=1)
        await ledger.resolve(connection, key="void", hold_id=held[1].id, now=NOW)
        applied = await migrate.apply(url)
        assert applied[0] == 20 and applied == sorted(m.version for m in migrate.discover() if m.version >= 20)
        assert await open_holds(connection) == [(held[2].id, LATER, PRICE_MICRO)]
        assert (await ledger.reconcile(connection)).ok
    finally:
        await connection.close()


async def test_migration_0020_applies_while_gateways_of_the_previous_release_move_money(servers):
    """A release migrates while the old one serves: the migration neither deadlocks with their holds
    and settlements nor misses one of them."""
    url = await ledger_before_0020(servers, "open_holds_under_load")
    connection = await asyncpg.connect(url)
    user_id, alice, revenue = await funded_user(connection, "load@example.com")
    stop, held = asyncio.Event(), []

    async def old_gateway(number: int) -> None:
        writer = await asyncpg.connect(url)
        try:
            while not stop.is_set():
                call = f"{number}-{len(held)}"
                hold = await ledger.move(writer, key=f"hold-{call}", debit=alice, credit=revenue, amount_micro=1,
                                         kind="usage", now=NOW, user_id=user_id, hold_until=LATER)
                held.append(hold.id)
                if len(held) % 2:
                    await ledger.resolve(writer, key=f"post-{call}", hold_id=hold.id, now=NOW, post_micro=1)
        finally:
            await writer.close()

    writers = [asyncio.create_task(old_gateway(number)) for number in range(3)]
    try:
        await asyncio.sleep(0.3)
        before = len(held)
        assert (await migrate.apply(url))[0] == 20
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        outcomes = await asyncio.gather(*writers, return_exceptions=True)
    try:
        assert outcomes == [None, None, None]  # no writer failed: no deadlock, no refusal
        assert before > 0 and len(held) > before
        report = await ledger.reconcile(connection)  # the table of open holds included
        assert report.ok, report.text()
    finally:
        await connection.close()


async def test_migration_0020_misses_no_hold_committed_while_it_waited_for_its_lock(servers):
    """Under a REPEATABLE READ default a snapshot taken before the lock would not see a hold that
    committed while the migration waited for it: the lock comes first."""
    url = await ledger_before_0020(servers, "open_holds_repeatable_read")
    admin = await asyncpg.connect(servers.admin_database_url)
    await admin.execute('ALTER DATABASE "open_holds_repeatable_read" SET default_transaction_isolation'
                        " = 'repeatable read'")
    await admin.close()
    connection = await asyncpg.connect(url)
    holder = await asyncpg.connect(url)
    try:
        user_id, alice, revenue = await funded_user(connection, "in-flight@example.com")
        in_flight = holder.transaction()
        await in_flight.start()
        hold = await ledger.move(holder, key="in-flight", debit=alice, credit=revenue, amount_micro=PRICE_MICRO,
                                 kind="usage", now=NOW, user_id=user_id, hold_until=LATER)
        migrating = asyncio.create_task(migrate.apply(url))
        await asyncio.sleep(0.5)
        assert not migrating.done()  # it waits for the hold's transaction
        await in_flight.commit()
        assert (await asyncio.wait_for(migrating, timeout=30))[0] == 20
        assert await open_holds(connection) == [(hold.id, LATER, PRICE_MICRO)]
        assert (await ledger.reconcile(connection)).ok
    finally:
        await holder.close()
        await connection.close()


SNEAKED_HOLD = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro, phase,
                       kind, expires_at)
VALUES ($1, '', $2, $3, $4, 'pending', 'usage', $5) RETURNING id"""


async def test_the_expiry_sweep_goes_past_what_it_cannot_void(database, alice, revenue, caplog):
    """What only SQL written around the ledger makes: a row of open_holds naming no hold, a hold whose
    account does not exist (the ledger refuses its void), a hold whose pending sum was never booked
    (its void breaks the account's CHECK). Each is logged and holds up no hold due after it."""
    held = await hold(database, alice, revenue, PRICE_MICRO)
    await database.execute("INSERT INTO open_holds (hold_id, expires_at, amount_micro) VALUES (0, $1, 1)", NOW)
    no_account = await database.fetchval(SNEAKED_HOLD, "sneaked-1", 10**12, revenue, 1, NOW)
    unbooked = await database.fetchval(SNEAKED_HOLD, "sneaked-2", alice, revenue, 5 * PRICE_MICRO, NOW)
    try:
        assert await expire(database, LATER) == 1
        assert sorted(row[0] for row in await open_holds(database)) == [0, no_account, unbooked]
        assert f"hold {no_account} not voided: unknown account(s) [{10**12}]" in caplog.text
        assert f"hold {unbooked} not voided: CheckViolationError" in caplog.text
    finally:
        await database.execute("SET session_replication_role = replica;"
                               " DELETE FROM transfers WHERE idempotency_key LIKE 'sneaked-%';"
                               " RESET session_replication_role")
        await database.execute("DELETE FROM open_holds WHERE hold_id = ANY($1::bigint[])", [0, no_account, unbooked])
    assert await database.fetchval("SELECT phase FROM transfers WHERE pending_id = $1", held.id) == "void_pending"


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


# The ledger's SQL functions (migration 0005, decision 0012): one round trip per move and
# resolution, each status mapped to its exception, refusals that leave a caller's transaction usable.


@asynccontextmanager
async def logged(pool: asyncpg.Pool):
    """A connection whose statements are collected in the list it yields alongside."""
    async with pool.acquire() as connection:
        statements: list[str] = []

        def log(query) -> None:
            statements.append(query.query)

        connection.add_query_logger(log)
        try:
            yield connection, statements
        finally:
            connection.remove_query_logger(log)


@pytest.fixture
async def accounts(database) -> dict[str, int]:
    return {"alice": await new_account(database, "alice", deposit_micro=10 * PRICE_MICRO),
            "revenue": await ledger.system_id(database, "revenue")}


def purchase_fields(accounts, **changes) -> dict:
    return {"key": "buy-1", "debit": accounts["alice"], "credit": accounts["revenue"],
            "amount_micro": PRICE_MICRO, "kind": "purchase", "now": NOW, **changes}


def hold_fields(accounts, **changes) -> dict:
    return purchase_fields(accounts, **{"key": "hold-1", "kind": "usage", "amount_micro": 3 * PRICE_MICRO,
                                        "hold_until": LATER, **changes})


# One round trip


async def test_a_move_a_hold_and_their_replays_are_one_statement_each(database, accounts):
    async with logged(database) as (connection, statements):
        bought = await ledger.move(connection, **purchase_fields(accounts))
        again = await ledger.move(connection, **purchase_fields(accounts))
        held = await ledger.move(connection, **hold_fields(accounts))
    assert (again.id, again.replayed, held.phase) == (bought.id, True, "pending")
    assert len(statements) == 3 and all("ledger_move(" in s for s in statements), statements


async def test_posting_and_voiding_a_hold_are_one_statement_each(database, accounts):
    held = await ledger.move(database, **hold_fields(accounts))
    other = await ledger.move(database, **hold_fields(accounts, key="hold-2", amount_micro=PRICE_MICRO))
    async with logged(database) as (connection, statements):
        await ledger.resolve(connection, key="post", hold_id=held.id, now=NOW, post_micro=PRICE_MICRO)
        await ledger.resolve(connection, key="void", hold_id=other.id, now=NOW)
        await ledger.resolve(connection, key="void", hold_id=other.id, now=NOW)  # a replay
    assert len(statements) == 3 and all("ledger_resolve(" in s for s in statements), statements


async def test_a_refusal_is_one_statement_and_writes_nothing(database, accounts):
    before = await snapshot(database)
    async with logged(database) as (connection, statements):
        with pytest.raises(InsufficientBalance):
            await ledger.move(connection, **purchase_fields(accounts, amount_micro=11 * PRICE_MICRO))
        with pytest.raises(HoldNotFound):
            await ledger.resolve(connection, key="void", hold_id=999_999, now=NOW)
    assert len(statements) == 2, statements
    assert await snapshot(database) == before


async def test_inside_a_callers_transaction_a_move_is_still_one_statement(database, accounts):
    """No savepoint: a refusal writes nothing and aborts nothing, so none is needed."""
    async with logged(database) as (connection, statements):
        async with connection.transaction():
            statements.clear()  # BEGIN
            await ledger.move(connection, **purchase_fields(accounts))
            assert len(statements) == 1, statements


async def test_a_refusal_leaves_the_callers_transaction_usable(database, accounts):
    async with database.acquire() as connection, connection.transaction():
        first = await ledger.move(connection, **purchase_fields(accounts))
        with pytest.raises(InsufficientBalance):
            await ledger.move(connection, **purchase_fields(accounts, key="buy-2", amount_micro=10 * PRICE_MICRO))
        with pytest.raises(IdempotencyConflict):
            await ledger.move(connection, **purchase_fields(accounts, amount_micro=2 * PRICE_MICRO))
        with pytest.raises(HoldNotFound):
            await ledger.resolve(connection, key="void", hold_id=first.id, now=NOW)
        await ledger.move(connection, **purchase_fields(accounts, key="buy-3"))
    assert (await sums(database, accounts["alice"]))["posted"] == 8 * PRICE_MICRO


async def test_a_failed_statement_inside_a_callers_transaction_rolls_back_with_it(database, accounts):
    """An error that is not a refusal (here: an unknown kind) aborts the enclosing transaction."""
    before = await snapshot(database)
    async with database.acquire() as connection:
        with pytest.raises(asyncpg.CheckViolationError):
            async with connection.transaction():
                await ledger.move(connection, **purchase_fields(accounts))
                await connection.fetchrow(
                    ledger.transfers.MOVE, "odd", b"", accounts["alice"], accounts["revenue"], 1, "posted",
                    "no-such-kind", None, None, "", "{}", NOW)
    assert await snapshot(database) == before


# Each status and its exception


async def call_move(connection, accounts, **changes) -> asyncpg.Record:
    """ledger_move called directly, with the arguments ledger.move would send."""
    fields = purchase_fields(accounts, **changes)
    return await connection.fetchrow(
        ledger.transfers.MOVE, fields["key"], changes.get("request_hash", b"h"), fields["debit"],
        fields["credit"], fields["amount_micro"], "posted", "purchase", None, None, "", "{}", NOW)


async def test_the_move_function_reports_each_outcome_as_a_status(database, accounts):
    ok = await call_move(database, accounts)
    assert (ok["status"], ok["idempotency_key"], ok["amount_micro"]) == ("ok", "buy-1", PRICE_MICRO)
    assert (await call_move(database, accounts))["status"] == "replayed"
    assert (await call_move(database, accounts, request_hash=b"other"))["status"] == "conflict"
    poor = await call_move(database, accounts, key="buy-2", amount_micro=10 * PRICE_MICRO)
    assert (poor["status"], poor["id"]) == ("insufficient_balance", None)
    ghost = accounts["alice"] + 1000
    missing = await call_move(database, accounts, key="buy-3", debit=ghost, credit=ghost + 1)
    assert (missing["status"], missing["detail"]) == ("unknown_account", f"{ghost},{ghost + 1}")
    missing = await call_move(database, accounts, key="buy-3", credit=ghost)
    assert (missing["status"], missing["detail"]) == ("unknown_account", str(ghost))


async def test_the_resolve_function_reports_each_outcome_as_a_status(database, accounts):
    held = await ledger.move(database, **hold_fields(accounts))

    async def call(key, hold_id, phase="post_pending", post=PRICE_MICRO, now=NOW, request_hash=b"h"):
        return await database.fetchrow(ledger.transfers.RESOLVE, key, request_hash, hold_id, phase, post,
                                       False, "{}", now)

    assert (await call("post", 999_999))["status"] == "hold_not_found"
    invalid = await call("post", held.id, post=3 * PRICE_MICRO + 1)
    assert (invalid["status"], invalid["detail"]) == ("invalid_amount", str(3 * PRICE_MICRO))
    assert (await call("post", held.id, post=None))["status"] == "invalid_amount"
    assert (await call("post", held.id, now=LATER))["status"] == "hold_expired"
    assert (await call("post", held.id))["status"] == "ok"
    assert (await call("post", held.id))["status"] == "replayed"
    assert (await call("post", held.id, request_hash=b"other"))["status"] == "conflict"
    assert (await call("void", held.id, phase="void_pending", post=None))["status"] == "hold_resolved"


@pytest.mark.parametrize("status, detail, error, message", [
    ("conflict", None, IdempotencyConflict, "idempotency key 'k' was used for a different request"),
    ("insufficient_balance", None, InsufficientBalance, "insufficient balance"),
    ("unknown_account", "9,12", LedgerError, r"unknown account\(s\) \[9, 12\]"),
    ("hold_not_found", None, HoldNotFound, "no hold 5"),
    ("hold_resolved", None, HoldResolved, "hold 5 is already resolved"),
    ("invalid_amount", "300", InvalidAmount, r"a hold of 300 can be posted at 0\.\.300"),
    ("hold_expired", None, HoldExpired, "hold 5 expired"),
    ("something new", None, LedgerError, "unexpected ledger status"),
])
def test_each_status_raises_its_exception(status, detail, error, message):
    with pytest.raises(error, match=message) as raised:
        _outcome({"status": status, "detail": detail}, key="k", hold_id=5)
    if error is LedgerError:  # the base class itself, not a more specific refusal
        assert type(raised.value) is LedgerError


# The ledger under concurrency: many transactions at once never overspend, double-write or deadlock.


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


# Account totals stay far inside bigint (ATTACK-2026-12-01 L10; decision 0014): a transfer that would
# take a user's balance or any account's running sum past its bound is refused with 422
# amount_out_of_range, written nowhere, and every other account keeps working.


MOST = "999999999.999999"  # the largest amount an adjustment takes (10^15 micro-credits less one)


@pytest.fixture
async def admin(gateway, database) -> dict[str, str]:
    await users.ensure_admin(database, email="root@example.com", password="admin password 1")
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "admin password 1"})
    return {"Authorization": "Bearer " + (await login.json())["access_token"]}


async def adjust(gateway, admin: dict, user_id: int, credits: str):
    return await gateway.post(f"/api/v1/admin/users/{user_id}/adjust", headers=admin,
                              json={"credits": credits, "reason": "test"})


async def error_code(response, status: int) -> str:
    assert response.status == status, await response.text()
    return (await response.json())["error"]["code"]


async def test_looping_top_ups_end_in_422_and_other_users_still_get_theirs(gateway, database, admin):
    rich = await register(gateway, "rich@example.com")
    other = await register(gateway, "other@example.com")
    statuses = [(await adjust(gateway, admin, rich["id"], MOST)).status for _ in range(12)]
    assert statuses == [201] * 10 + [422] * 2
    refused = await adjust(gateway, admin, rich["id"], MOST)
    assert await error_code(refused, 422) == "amount_out_of_range"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE user_id = $1", rich["id"]) == 10
    assert (await adjust(gateway, admin, other["id"], "5")).status == 201
    assert (await adjust(gateway, admin, rich["id"], "-5")).status == 201
    assert (await ledger.balance(database, other["id"])).available_micro == 5 * ledger.MICRO_PER_CREDIT


async def test_a_system_account_near_the_bigint_limit_refuses_with_422_not_500(gateway, database, admin):
    """The report's 9,223 top-ups overflowed the adjustments account: every adjust was a 500 for good."""
    user = await register(gateway, "user@example.com")
    adjustments = await ledger.system_id(database, "adjustments")
    promotions = await ledger.system_id(database, "promotions")
    # 9,300 moves of 10^15 between two system accounts (which have no balance limit), in one statement:
    # far past bigint without the bound; with it, the moves past the bound come back refused.
    statuses = await database.fetch(
        "SELECT (ledger_move('fill-' || n, '\\x00'::bytea, $1, $2, 1000000000000000, 'posted', 'adjustment', "
        "NULL, NULL, 'fill', '{}'::jsonb, now())).status FROM generate_series(1, 9300) AS n",
        adjustments, promotions)
    assert {row["status"] for row in statuses} == {"ok", "amount_out_of_range"}
    response = await adjust(gateway, admin, user["id"], MOST)
    assert await error_code(response, 422) == "amount_out_of_range"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE user_id = $1", user["id"]) == 0
    # The other direction still moves: a deduction credits the adjustments account.
    await deposit(database, user["id"], 10)
    assert (await adjust(gateway, admin, user["id"], "-1")).status == 201
    row = await database.fetchrow("SELECT debits_posted, credits_posted FROM accounts WHERE id = $1", adjustments)
    assert row["debits_posted"] <= ledger.ACCOUNT_SUM_MAX_MICRO


async def test_the_ledger_function_refuses_a_single_amount_above_the_maximum(database):
    adjustments = await ledger.system_id(database, "adjustments")
    promotions = await ledger.system_id(database, "promotions")
    status = await database.fetchval(
        "SELECT (ledger_move('too-big', '\\x00'::bytea, $1, $2, $3, 'posted', 'adjustment', NULL, NULL, '', "
        "'{}'::jsonb, now())).status", adjustments, promotions, ledger.AMOUNT_MAX_MICRO + 1)
    assert status == "amount_out_of_range"
    assert await database.fetchval("SELECT count(*) FROM transfers") == 0


async def test_the_database_itself_refuses_a_sum_past_the_bound(database):
    import asyncpg

    with pytest.raises(asyncpg.CheckViolationError):
        await database.execute("UPDATE accounts SET debits_posted = $1 WHERE code = 'revenue'",
                               ledger.ACCOUNT_SUM_MAX_MICRO + 1)


# The ledger as a state machine: random sequences of money operations against real PostgreSQL.
# A plain Python model predicts every outcome and balance; after each step the stored books must match
# it, stay balanced and keep every user above its overdraft limit.


USERS = 3
LANES = 2  # the batched machine's Batcher: as the gateway's default (TOLLGATE_LEDGER_BATCH_LANES)
OVERDRAFT_MICRO = {0: 0, 1: 0, 2: 2 * PRICE_MICRO}  # user index -> overdraft limit
SUMS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None)

amounts = st.integers(min_value=1, max_value=4 * PRICE_MICRO)
user_indexes = st.integers(min_value=0, max_value=USERS - 1)
picks = st.integers(min_value=0, max_value=10**6)  # an index into a list, taken modulo its length


@dataclass
class Hold:
    id: int
    debit: int
    credit: int
    amount_micro: int
    expires_at: dt.datetime
    resolved: bool = False
    user_id: int | None = None  # its user: the Batcher lane its resolution goes in


@dataclass
class Request:
    """A call that succeeded, kept to be replayed: which function, its arguments, its transfer id."""
    function: str
    fields: dict
    transfer_id: int


class LedgerMachine(RuleBasedStateMachine):
    """`batched`: moves and resolutions go through a ledger.Batcher of two lanes (ledger_batch,
    decision 0021), as the AI path sends them: each user's moves and resolutions in its lane, its holds
    crediting its revenue shard; the `burst` rule sends several at once, one batch per lane."""

    def __init__(self, database_url: str, batched: bool = False) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.connection: asyncpg.Connection = self.run(asyncpg.connect(database_url))
        self.batcher: ledger.Batcher | None = None
        self.pool: asyncpg.Pool | None = None
        if batched:
            self.pool = self.run(self.create_pool(database_url))
            self.batcher = ledger.Batcher(self.pool, lanes=LANES)
        self.now = NOW
        self.key_number = 0
        self.holds: list[Hold] = []
        self.requests: list[Request] = []
        self.run(self.connection.execute(RESET_DATABASE))
        self.revenue = self.run(ledger.system_id(self.connection, "revenue"))
        self.clearing = self.run(ledger.system_id(self.connection, "payment_clearing"))
        self.user_ids: list[int] = []
        self.users = [self.run(self.create_user(index)) for index in range(USERS)]
        self.shards = [self.run(ledger.system_id(self.connection, ledger.revenue_shard(user_id)))
                       for user_id in self.user_ids]
        self.expected = {row["id"]: dict.fromkeys(SUMS, 0)
                         for row in self.run(self.connection.fetch("SELECT id FROM accounts"))}

    @staticmethod
    async def create_pool(database_url: str) -> asyncpg.Pool:
        return await asyncpg.create_pool(database_url, min_size=1, max_size=LANES)  # on the machine's loop

    async def create_user(self, index: int) -> int:
        user_id = await users.ensure_client(self.connection, email=f"user{index}@example.com")
        await ledger.set_overdraft(self.connection, user_id, OVERDRAFT_MICRO[index])
        self.user_ids.append(user_id)
        return await ledger.user_account(self.connection, user_id)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        if self.batcher is not None and self.pool is not None:
            self.run(self.batcher.close())
            self.run(self.pool.close())
        self.run(self.connection.close())
        self.loop.close()

    # The model

    def next_key(self, prefix: str) -> str:
        self.key_number += 1
        return f"{prefix}-{self.key_number}"

    def available(self, account: int) -> int:
        sums = self.expected[account]
        return sums["credits_posted"] - sums["debits_posted"] - sums["debits_pending"]

    def may_spend(self, account: int, amount_micro: int) -> bool:
        if account not in self.users:
            return True
        return self.available(account) - amount_micro >= -OVERDRAFT_MICRO[self.users.index(account)]

    def call(self, function: str, **fields):
        """Call ledger.move or ledger.resolve (batched or not); a LedgerError is returned, not raised."""
        return self.run(self.outcome(function, fields))

    async def outcome(self, function: str, fields: dict):
        try:
            if self.batcher is not None:
                return await getattr(self.batcher, function)(now=self.now, **fields)
            if function == "resolve":  # the lane of a batched resolution; ledger.resolve has none
                fields = {name: value for name, value in fields.items() if name != "user_id"}
            return await getattr(ledger, function)(self.connection, now=self.now, **fields)
        except ledger.LedgerError as error:
            return error

    @staticmethod
    async def together(calls: list) -> list:
        return await asyncio.gather(*calls)  # started in order: queued, and answered, in that order

    def transfer_fields(self, prefix: str, debit: int, credit: int, amount_micro: int, kind: str,
                        hold_ttl_s: int | None = None) -> dict:
        fields = {"key": self.next_key(prefix), "debit": debit, "credit": credit,
                  "amount_micro": amount_micro, "kind": kind, "metadata": {"step": self.key_number},
                  "user_id": self.user_of(debit) or self.user_of(credit)}
        if hold_ttl_s is not None:
            fields["hold_until"] = self.now + dt.timedelta(seconds=hold_ttl_s)
        return fields

    def user_of(self, account: int) -> int | None:
        return self.user_ids[self.users.index(account)] if account in self.users else None

    def transfer(self, prefix: str, debit: int, credit: int, amount_micro: int, kind: str,
                 hold_ttl_s: int | None = None) -> None:
        fields = self.transfer_fields(prefix, debit, credit, amount_micro, kind, hold_ttl_s)
        self.check_transfer(fields, self.call("move", **fields))

    def check_transfer(self, fields: dict, outcome) -> None:
        """The model's verdict on one move, then its sums advanced by it."""
        debit, credit, amount_micro = fields["debit"], fields["credit"], fields["amount_micro"]
        holding = "hold_until" in fields
        if not self.may_spend(debit, amount_micro):
            assert isinstance(outcome, ledger.InsufficientBalance), outcome
            return
        assert isinstance(outcome, ledger.Transfer) and not outcome.replayed, outcome
        self.requests.append(Request("move", fields, outcome.id))
        side = "pending" if holding else "posted"
        self.expected[debit]["debits_" + side] += amount_micro
        self.expected[credit]["credits_" + side] += amount_micro
        if holding:
            self.holds.append(Hold(outcome.id, debit, credit, amount_micro, fields["hold_until"],
                                   user_id=fields["user_id"]))

    def release(self, hold: Hold, posted_micro: int) -> None:
        hold.resolved = True
        self.expected[hold.debit]["debits_pending"] -= hold.amount_micro
        self.expected[hold.credit]["credits_pending"] -= hold.amount_micro
        self.expected[hold.debit]["debits_posted"] += posted_micro
        self.expected[hold.credit]["credits_posted"] += posted_micro

    # Rules

    @rule(user=user_indexes, amount_micro=amounts)
    def deposit(self, user, amount_micro):
        self.transfer("deposit", self.clearing, self.users[user], amount_micro, "deposit")

    @rule(user=user_indexes, amount_micro=amounts)
    def purchase(self, user, amount_micro):
        self.transfer("purchase", self.users[user], self.revenue, amount_micro, "purchase")

    @rule(user=user_indexes, amount_micro=amounts)
    def refund(self, user, amount_micro):
        self.transfer("refund", self.revenue, self.users[user], amount_micro, "refund")

    @rule(user=user_indexes, amount_micro=amounts, hold_ttl_s=st.integers(min_value=1, max_value=120))
    def hold(self, user, amount_micro, hold_ttl_s):
        self.transfer("hold", self.users[user], self.shards[user], amount_micro, "usage", hold_ttl_s)

    @precondition(lambda self: self.holds)
    @rule(pick=picks, share=st.integers(min_value=0, max_value=11))
    def post(self, pick, share):
        """Post 0..10 tenths of the hold, or (share 11) one micro-credit more than held."""
        hold = self.holds[pick % len(self.holds)]
        posted_micro = hold.amount_micro + 1 if share == 11 else hold.amount_micro * share // 10
        fields = {"key": self.next_key("post"), "hold_id": hold.id, "post_micro": posted_micro, "user_id": hold.user_id}
        outcome = self.call("resolve", **fields)
        if hold.resolved:
            assert isinstance(outcome, ledger.HoldResolved), outcome
        elif posted_micro > hold.amount_micro:
            assert isinstance(outcome, ledger.InvalidAmount), outcome
        elif hold.expires_at <= self.now:
            assert isinstance(outcome, ledger.HoldExpired), outcome
        else:
            assert isinstance(outcome, ledger.Transfer) and outcome.amount_micro == posted_micro, outcome
            self.requests.append(Request("resolve", fields, outcome.id))
            self.release(hold, posted_micro)

    @precondition(lambda self: self.holds)
    @rule(pick=picks)
    def void(self, pick):
        hold = self.holds[pick % len(self.holds)]
        fields = {"key": self.next_key("void"), "hold_id": hold.id, "user_id": hold.user_id}
        outcome = self.call("resolve", **fields)
        if hold.resolved:
            assert isinstance(outcome, ledger.HoldResolved), outcome
        else:
            assert isinstance(outcome, ledger.Transfer) and outcome.phase == "void_pending", outcome
            self.requests.append(Request("resolve", fields, outcome.id))
            self.release(hold, 0)

    @precondition(lambda self: self.batcher is not None)
    @rule(moves=st.lists(st.tuples(user_indexes, amounts, st.sampled_from(["purchase", "hold", "refund"])),
                         min_size=2, max_size=8))
    def burst(self, moves):
        """Several moves at once, one batch per lane: each is checked against the sums the ones before
        it left (a user's moves are in one lane, in order; the lanes share only system accounts,
        which have no balance to check)."""
        sides = {"purchase": lambda user: (self.users[user], self.revenue),
                 "hold": lambda user: (self.users[user], self.shards[user]),
                 "refund": lambda user: (self.revenue, self.users[user])}
        batch = [self.transfer_fields(kind, *sides[kind](user), amount_micro,
                                      "usage" if kind == "hold" else kind, 60 if kind == "hold" else None)
                 for user, amount_micro, kind in moves]
        batches_before = self.batcher.batches
        outcomes = self.run(self.together([self.outcome("move", fields) for fields in batch]))
        assert self.batcher.batches == batches_before + len({fields["user_id"] % LANES for fields in batch})
        for fields, outcome in zip(batch, outcomes):
            self.check_transfer(fields, outcome)

    @rule(advance_s=st.integers(min_value=0, max_value=90))
    def expire(self, advance_s):
        self.now += dt.timedelta(seconds=advance_s)
        due = [hold for hold in self.holds if not hold.resolved and hold.expires_at <= self.now]
        assert self.run(ledger.expire_holds(self.connection, now=self.now)) == len(due)
        for hold in due:
            self.release(hold, 0)

    @precondition(lambda self: self.requests)
    @rule(pick=picks)
    def replay(self, pick):
        request = self.requests[pick % len(self.requests)]
        outcome = self.call(request.function, **request.fields)
        assert isinstance(outcome, ledger.Transfer), outcome
        assert (outcome.id, outcome.replayed) == (request.transfer_id, True)

    @precondition(lambda self: self.requests)
    @rule(pick=picks, change=st.sampled_from(["amount", "metadata"]))
    def replay_changed(self, pick, change):
        request = self.requests[pick % len(self.requests)]
        fields = dict(request.fields)
        if change == "metadata":
            fields["metadata"] = {"step": -1}
        elif request.function == "move":
            fields["amount_micro"] += 1
        else:  # a void becomes a post of nothing; a post posts one micro-credit less or more
            posted_micro = fields.get("post_micro")
            fields["post_micro"] = 0 if posted_micro is None else posted_micro ^ 1
        outcome = self.call(request.function, **fields)
        assert isinstance(outcome, ledger.IdempotencyConflict), outcome

    # Invariants, checked after every step

    @invariant()
    def stored_sums_match_the_model(self):
        rows = self.run(self.connection.fetch(f"SELECT id, {', '.join(SUMS)} FROM accounts"))
        assert {row["id"]: {name: row[name] for name in SUMS} for row in rows} == self.expected

    @invariant()
    def no_user_is_below_its_overdraft_limit(self):
        below = self.run(self.connection.fetchval(
            "SELECT count(*) FROM accounts WHERE kind = 'user'"
            " AND credits_posted - debits_posted - debits_pending < -overdraft_micro"))
        assert below == 0

    @invariant()
    def money_is_conserved(self):
        row = self.run(self.connection.fetchrow(
            "SELECT sum(credits_posted - debits_posted) AS posted,"
            " sum(credits_pending - debits_pending) AS pending FROM accounts"))
        assert (row["posted"], row["pending"]) == (0, 0)

    @invariant()
    def each_hold_is_resolved_at_most_once(self):
        most = self.run(self.connection.fetchval(
            "SELECT coalesce(max(resolutions), 0) FROM"
            " (SELECT count(*) AS resolutions FROM transfers WHERE pending_id IS NOT NULL"
            "  GROUP BY pending_id) AS counted"))
        assert most <= 1

    @invariant()
    def reconciliation_passes(self):
        report = self.run(ledger.reconcile(self.connection))
        assert report.ok, report.text()


def test_random_operation_sequences_keep_the_books_exact(servers, database):
    run_state_machine_as_test(lambda: LedgerMachine(servers.database_url), settings=SETTINGS)


def test_random_operation_sequences_through_batches_keep_the_books_exact(servers, database):
    run_state_machine_as_test(lambda: LedgerMachine(servers.database_url, batched=True), settings=SETTINGS)
