"""Settling an AI call: the charge and its usage row written by one statement."""

from __future__ import annotations

import asyncio

import asyncpg
import openai
import orjson
import pytest

import ledger
from gateway.accounts import api_keys, users
from gateway.ai import reservation, settlement
from gateway.ai.authentication import KeyPrincipal
from gateway.ai.price_table import ModelPrice
from gateway.ai.pricing import Price
from gateway.ai.resources import AI, Services
from gateway.ai.routes import CallSpec
from gateway.ai.usage import Usage
from gateway.core.call import Call
from gateway.core.clock import ManualClock
from tests.support.ai import GPT, MESSAGES, expected_cost, start
from tests.support.gateways import make_settings
from tests.support.ledger import NOW, PRICE_MICRO, new_account
from tests.support.store_faults import RestartingPostgres

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


# Every resolved AI hold has its usage row at once, written by the statement that resolved it (L6):
# a worker killed before its next batch flush loses no row of a charged call.


UNLOGGED_CHARGES = """
SELECT count(*) FROM transfers r
WHERE r.kind = 'usage' AND r.phase IN ('post_pending', 'void_pending')
  AND NOT EXISTS (SELECT 1 FROM ai_usage u WHERE u.hold_transfer_id = r.pending_id)"""


async def test_a_charge_has_its_usage_row_though_the_batch_is_never_flushed(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database, usage_flush_interval_s=3600)
    await stack.control("faults", {"mode": "500", "count": 1})
    client = stack.openai()
    with pytest.raises(openai.InternalServerError):  # a voided hold
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3, stream=True)
    [chunk async for chunk in stream]
    await client.close()
    stack.gateway.server.app[AI].usage.pending.clear()  # what a kill -9 does to the batch
    assert len(await stack.charges()) == 2
    assert await database.fetchval(UNLOGGED_CHARGES) == 0
    rows = await database.fetch("SELECT outcome, stream, charged_micro FROM ai_usage ORDER BY id")
    charges = await stack.charges()
    assert [tuple(row) for row in rows] == [("upstream_error", False, 0), ("ok", False, charges[0]),
                                            ("ok", True, charges[1])]


# PostgreSQL away when a call ends (the chaos run, decision 0026): the stream was delivered, so
# the settlement waits for the database (ai_settle_retry_s) instead of leaving the hold to expire
# uncharged — a call given away.


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_a_stream_delivered_while_postgres_restarts_is_charged_once_it_is_back(
        gateway_factory, mock_target, database, servers):
    postgres = RestartingPostgres(servers.database_url)
    stack = await start(gateway_factory, mock_target, database,
                        database_url=await postgres.start(servers.database_url))
    await stack.control("latency", {"ms": 0, "chunk_ms": 100})
    client = stack.openai()
    try:
        stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [await anext(aiter(stream))]
        postgres.refuse("57P01", "terminating connection due to administrator command")
        rest = asyncio.create_task(collect(stream))
        await asyncio.sleep(1.0)  # the stream is delivered, its settlement meets the restart
        postgres.restore()
        chunks += await rest
    finally:
        await client.close()
        await postgres.close()
    usage = chunks[-1].usage
    assert postgres.refused > 0 and usage is not None
    assert await stack.charges() == [expected_cost(usage.prompt_tokens, 0, usage.completion_tokens)]
    assert await stack.open_holds() == 0
    assert await database.fetchval("SELECT count(*) FROM ai_usage WHERE outcome = 'ok'") == 1


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
                            pool=pool, keys=None, prices=None, upstreams={}, session=None, usage=Collected(),
                            ledger=ledger.Batcher(pool))
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
        # One statement: the hold within the key's and the user's budgets (decisions 0019, 0021).
        assert len(statements) == 1 and "ledger_batch(" in statements[0], statements
        statements.clear()
        call.charge, call.usage, call.usage_source = True, Usage(5, 0, 5), "upstream"
        assert await settlement.settle(services, call) == 15
        # The usage row is written by that same statement.
        assert len(statements) == 1 and "ledger_batch(" in statements[0], statements
    finally:
        await pool.close()
    balance = await ledger.balance(database, user_id)
    assert (balance.posted_micro, balance.held_micro) == (10 * PRICE_MICRO - 15, 0)
    row = await database.fetchrow("SELECT charged_micro, hold_transfer_id, usage_source FROM ai_usage")
    assert tuple(row) == (15, call.hold.id, "upstream") and services.usage.rows == []


# A settlement that PostgreSQL rolls back whole (a deadlock, a serialization failure), refuses
# from a standby mid-failover (read-only, 25006) or fails on a system error (I/O, 58030) raises
# PostgreSQL's own error out of the ledger batch, which the settlement retries (STORE_FAILURES);
# wrapped as ItemFailed it would give up and
# leave the hold to expire uncharged — a call given away (decision 0021, review).

ROLLED_BACK_ONCE = """
CREATE SEQUENCE settle_attempts;
CREATE FUNCTION settle_rolled_back_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN  -- a sequence is not rolled back with the transaction: the first attempt fails, the next pass
    IF NEW.idempotency_key LIKE 'ai:%:settle' AND nextval('settle_attempts') = 1 THEN
        RAISE EXCEPTION 'the settlement meets trouble once' USING ERRCODE = '{sqlstate}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER settle_rolled_back_once BEFORE INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION settle_rolled_back_once();"""
UNDONE = ("DROP TRIGGER settle_rolled_back_once ON transfers; DROP FUNCTION settle_rolled_back_once();"
          " DROP SEQUENCE settle_attempts")


@pytest.mark.parametrize("sqlstate", ["40P01", "40001", "25006", "58030"])
async def test_a_settlement_rolled_back_once_is_retried_and_charged_once(gateway_factory, mock_target, database,
                                                                         sqlstate):
    stack = await start(gateway_factory, mock_target, database)
    client = stack.openai()
    await database.execute(ROLLED_BACK_ONCE.format(sqlstate=sqlstate))
    try:
        answer = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
        attempts = await database.fetchval("SELECT last_value FROM settle_attempts")
    finally:
        await client.close()
        await database.execute(UNDONE)
    usage = answer.usage
    assert attempts == 2 and usage is not None
    assert await stack.charges() == [expected_cost(usage.prompt_tokens, 0, usage.completion_tokens)]
    assert await stack.open_holds() == 0
    assert await database.fetchval("SELECT count(*) FROM ai_usage WHERE outcome = 'ok'") == 1
    assert (await ledger.reconcile(database)).ok
