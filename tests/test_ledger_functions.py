"""The ledger's SQL functions (migration 0005, decision 0012): one round trip per move and
resolution, each status mapped to its exception, refusals that leave a caller's transaction usable,
and the purchase + referral bonus lock order under concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import asynccontextmanager

import asyncpg
import orjson
import pytest

import ledger
from gateway.accounts import purchases
from gateway.accounts import users
from gateway.ai import reservation, settlement
from gateway.ai.resources import Services
from gateway.core.call import Call
from gateway.accounts import api_keys
from gateway.ai.price_table import ModelPrice
from gateway.ai.pricing import Price
from gateway.ai.routes import CallSpec
from gateway.ai.authentication import KeyPrincipal
from gateway.ai.usage import Usage
from gateway.core.clock import ManualClock
from ledger import (HoldExpired, HoldNotFound, HoldResolved, IdempotencyConflict, InsufficientBalance,
                    InvalidAmount, LedgerError)
from ledger.transfers import _outcome
from tests.conftest import make_settings
from tests.test_ledger_helpers import NOW, PRICE_MICRO, new_account, snapshot, sums

LATER = NOW + dt.timedelta(minutes=5)


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


# The AI path: a hold and its settlement


class Collected:
    """A usage log that only keeps the rows."""

    def __init__(self) -> None:
        self.rows: list = []

    def add(self, row) -> None:
        self.rows.append(row)

    def observe(self, row) -> None:
        pass  # written with the settlement, not queued


RESET = "SELECT pg_advisory_unlock_all()"


async def test_an_ai_call_holds_in_one_statement_and_settles_in_one(servers, database):
    """The account id comes with the cached key record (issue 8): the hold is the move alone."""
    user_id = await users.ensure_client(database, email="ai@example.com")
    await new_account(database, "ai", deposit_micro=10 * PRICE_MICRO)
    key = await api_keys.create(database, user_id=user_id, name="", allowed_models=[], ip_allowlist=[], rpm_limit=0,
                                tpm_limit=0, now=NOW, expires_at=None)
    statements: list[str] = []

    async def log_queries(connection: asyncpg.Connection) -> None:
        # Not the reset asyncpg sends when a connection goes back to the pool (one per acquire).
        connection.add_query_logger(lambda query: None if query.query.startswith(RESET)
                                    else statements.append(query.query))

    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1, init=log_queries)
    try:
        services = Services(settings=make_settings(servers, "http://127.0.0.1:1", 1), clock=ManualClock(),
                            pool=pool, keys=None, prices=None, upstreams={}, session=None, usage=Collected())
        await ledger.system_id(pool, "revenue")  # cached per process after the first call
        statements.clear()
        principal = KeyPrincipal(key_id=key.id, user_id=user_id, allowed_models=frozenset(), ip_networks=(),
                                 expires_ms=0, tpm_limit=0, key_hash=bytes(32),
                                 account_id=await ledger.user_account(database, user_id))
        spec = CallSpec("openai", "gpt-4o-mini", "/chat/completions", False, True, 10, "chat")
        call = Call(request_id="req-1", started_s=0.0, principal=principal, spec=spec, call_id="call-1",
                    price=ModelPrice("gpt-4o-mini", "openai", Price(1_000_000, 2_000_000, 0), 100))
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
        await reservation.reserve(services, call, b'{"model":"gpt-4o-mini"}', body, orjson.dumps(body))
        assert len(statements) == 1 and "ledger_move(" in statements[0], statements
        statements.clear()
        call.charge, call.usage, call.usage_source = True, Usage(5, 0, 5), "upstream"
        assert await settlement.settle(services, call) == 15
        # The usage row is written by that same statement.
        assert len(statements) == 1 and "ledger_resolve(" in statements[0], statements
    finally:
        await pool.close()
    balance = await ledger.balance(database, user_id)
    assert (balance.posted_micro, balance.held_micro) == (10 * PRICE_MICRO - 15, 0)
    row = await database.fetchrow("SELECT charged_micro, hold_transfer_id, usage_source FROM ai_usage")
    assert tuple(row) == (15, call.hold.id, "upstream") and services.usage.rows == []


# Lock order inside a caller's transaction: purchase + referral bonus


async def test_referred_purchases_and_the_referrers_own_purchases_never_deadlock(servers, database):
    """A qualifying purchase locks revenue and the buyer and promises the referrer a bonus (paid
    when the purchase is final); the referrer's own purchases queue behind it, never deadlock."""
    settings = make_settings(servers, "http://127.0.0.1:1", 1)
    referrer = await users.ensure_client(database, email="referrer@example.com")
    await new_account(database, "referrer", deposit_micro=1000 * PRICE_MICRO)
    friends = []
    for number in range(8):
        friend = await users.create(database, email=f"friend{number}@example.com", password=None,
                                    referred_by=referrer)
        await new_account(database, f"friend{number}", deposit_micro=300 * PRICE_MICRO)
        friends.append(friend)
    wide = await asyncpg.create_pool(servers.database_url, min_size=16, max_size=16)
    try:
        def buy(user_id: int, key: str, price_credits: int):
            return purchases.buy_tokens(wide, settings, user_id=user_id, key=key, duration_hours=720,
                                        scope="full", price_micro=price_credits * PRICE_MICRO, now=NOW)

        outcomes = await asyncio.gather(
            *(buy(friend, "month", 300) for friend in friends),
            *(buy(referrer, f"own-{number}", 1) for number in range(16)), return_exceptions=True)
    finally:
        await wide.close()
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert sorted(o.referral_bonus_micro for o in outcomes[:8]) == [30 * PRICE_MICRO] * 8  # promised
    referrer_balance = await ledger.balance(database, referrer)
    assert referrer_balance.posted_micro == (1000 - 16) * PRICE_MICRO  # paid once the purchases are final
