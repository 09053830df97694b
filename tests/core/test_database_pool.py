"""gateway.core.database_pool against real PostgreSQL: every release resets the session as asyncpg does,
except one whose user said it left the session untouched (the ledger's batches), and only that one."""

from __future__ import annotations

import datetime as dt

import pytest

import ledger
from gateway.core import database_pool
from tests.support.ledger import NOW, PRICE_MICRO, new_account

RESET_QUERY_MARK = "RESET ALL"


@pytest.fixture
async def logged_pool(servers, database):
    """A pool of one connection, and the statements it is sent, in order."""
    sent: list[str] = []
    pool = await database_pool.create(servers.database_url, min_size=1, max_size=1,
                                      init=lambda connection: _log_into(connection, sent))
    yield pool, sent
    await pool.close()


async def _log_into(connection, sent: list[str]) -> None:
    connection.add_query_logger(lambda logged: sent.append(logged.query))


def resets(sent: list[str]) -> int:
    return sum(RESET_QUERY_MARK in query for query in sent)


async def test_a_release_resets_the_session_as_asyncpg_does(logged_pool):
    pool, sent = logged_pool
    async with pool.acquire() as connection:
        await connection.execute("SET statement_timeout = '7s'; LISTEN tollgate_test; "
                                 "SELECT pg_advisory_lock(4242)")
    async with pool.acquire() as connection:
        assert await connection.fetchval("SHOW statement_timeout") == "0"
        assert await connection.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert await connection.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                         "AND pid = pg_backend_pid()") == 0
    assert resets(sent) == 2


async def test_a_user_that_left_the_session_untouched_skips_the_reset_of_that_release_only(logged_pool):
    pool, sent = logged_pool
    async with pool.acquire() as connection:
        await connection.fetchval("SELECT 1")
        connection.session_untouched()
    assert resets(sent) == 0
    async with pool.acquire() as connection:
        await connection.execute("SET statement_timeout = '7s'")
    async with pool.acquire() as connection:
        assert await connection.fetchval("SHOW statement_timeout") == "0"
    assert resets(sent) == 2


async def test_a_transaction_left_open_is_rolled_back_even_when_the_user_said_untouched(logged_pool):
    pool, sent = logged_pool
    async with pool.acquire() as connection:
        await connection.execute("BEGIN; CREATE TEMPORARY TABLE left_open (n int) ON COMMIT DROP")
        connection.session_untouched()
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
        assert not connection.is_in_transaction()


async def test_the_ledgers_batches_go_back_to_the_pool_without_a_reset(logged_pool):
    pool, sent = logged_pool
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    sent.clear()
    batcher = ledger.Batcher(pool)
    held = await batcher.move(key="hold", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="usage",
                              now=NOW, hold_until=NOW + dt.timedelta(minutes=5))
    await batcher.resolve(key="post", hold_id=held.id, now=NOW, post_micro=1)
    assert len(sent) == 2 and all("ledger_batch" in query for query in sent) and resets(sent) == 0
    async with pool.acquire() as connection:  # anyone else's release is reset again
        await connection.fetchval("SELECT 1")
    assert resets(sent) == 1


async def test_a_batch_the_database_refused_is_reset_on_release(logged_pool):
    """Only a batch call that succeeded says its session was untouched; one PostgreSQL refused is reset
    as any other use. A NUL in a transfer's metadata: jsonb refuses the whole batch's parameter."""
    pool, sent = logged_pool
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    sent.clear()
    batcher = ledger.Batcher(pool)
    with pytest.raises(ledger.LedgerError):
        await batcher.move(key="hold", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="usage", now=NOW,
                           hold_until=NOW + dt.timedelta(minutes=5), metadata={"note": "a\x00b"})
    assert sent and all("ledger_batch" in query for query in sent[:-1]) and RESET_QUERY_MARK in sent[-1]
