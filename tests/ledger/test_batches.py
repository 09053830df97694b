"""Group commit (ledger.batches, migration 0015, decision 0021) against real PostgreSQL: many callers'
moves and resolutions in one call of ledger_batch, each item checked and answered on its own, the
accounts written once per batch, and no deadlock between batches of several workers and direct moves."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings

import ledger
from devkit.embedded import free_port
from gateway.accounts import api_keys, budgets
from tests.support.accounts import deposit
from tests.support import ledger_model
from tests.support.ai import GPT, MESSAGES
from tests.support.ai import PRICE_MICRO as AI_PRICE_MICRO
from tests.support.ledger import NOW, PRICE_MICRO, move, new_account, open_holds, posted, resolve, sums
from tests.support.processes import TOLLGATE, gateway_env, stop, wait_until_up

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


async def test_a_batchs_holds_and_resolutions_enter_and_leave_the_table_of_open_holds(pool, batcher):
    """One ledger_batch call appends many holds (or resolutions) in one statement: the trigger of
    migration 0020 fires once for them all and follows each."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    holds = await asyncio.gather(*(
        batcher.move(key=f"hold-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="usage",
                     now=NOW, hold_until=LATER + dt.timedelta(seconds=number)) for number in range(6)))
    assert batcher.batches < len(holds)
    assert await open_holds(pool) == sorted((held.id, held.expires_at, PRICE_MICRO) for held in holds)
    outcomes = await gather_outcomes(
        [batcher.resolve(key=f"post-{held.id}", hold_id=held.id, now=NOW, post_micro=1) for held in holds[:3]]
        + [batcher.resolve(key=f"void-{held.id}", hold_id=held.id, now=NOW) for held in holds[3:5]]
        + [batcher.resolve(key="post-again", hold_id=holds[0].id, now=NOW, post_micro=1)])
    assert outcome_names(outcomes) == {"Transfer": 5, "HoldResolved": 1}
    assert await open_holds(pool) == [(holds[5].id, holds[5].expires_at, PRICE_MICRO)]


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
    """A NUL in one item's metadata, which jsonb refuses: the batch's one statement fails and writes
    nothing, its items go again one per call; the bad one answers an error, written nowhere, the
    items around it go through."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase",
                     now=NOW, metadata={"note": "a\x00b"} if number == 1 else None) for number in range(3))
    assert (batcher.batches, batcher.items) == (2, 2)  # the failed batch counts nothing; two items alone
    assert [type(o).__name__ for o in outcomes] == ["Transfer", "ItemFailed", "Transfer"]
    assert "22P05" in str(outcomes[1])  # untranslatable_character
    assert await posted(pool, buyer) == 8 * PRICE_MICRO
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE idempotency_key = 'buy-1'") == 0


async def test_a_batch_never_answers_an_item_with_another_items_transfer(pool, batcher):
    """The batch reads its rows back in id order and takes the ids to follow its items' order; it
    checks that, never assumes it. Ids handed out backwards (a trigger here): the batch refuses
    itself, writes nothing, and each item goes again alone and gets its own transfer."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    await pool.execute("""
        CREATE SEQUENCE backwards INCREMENT BY -1 START WITH 1000000000 MAXVALUE 1000000000;
        CREATE FUNCTION ids_backwards() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.id := nextval('backwards'); RETURN NEW; END $$;
        CREATE TRIGGER ids_backwards BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION ids_backwards();""")
    try:
        outcomes = await gather_outcomes(
            batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO + number,
                         kind="purchase", now=NOW) for number in range(3))
    finally:
        await pool.execute("DROP TRIGGER ids_backwards ON transfers; DROP FUNCTION ids_backwards();"
                           " DROP SEQUENCE backwards")
    assert (batcher.batches, batcher.items) == (3, 3)  # the refused batch counts nothing; three alone
    assert [(o.idempotency_key, o.amount_micro) for o in outcomes] == [
        (f"buy-{number}", PRICE_MICRO + number) for number in range(3)]
    assert await posted(pool, buyer) == 10 * PRICE_MICRO - 3 * PRICE_MICRO - 3
    assert (await ledger.reconcile(pool)).ok


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


async def test_a_key_committed_elsewhere_while_a_batch_waits_on_it_is_that_items_conflict(pool, batcher):
    """The other transfer shares no account with the batch: only the unique key makes them meet. The
    batch's item waits for it, answers a conflict, and the batch's other item is written."""
    payer, payee = (await new_account(pool, "payer", deposit_micro=PRICE_MICRO), await new_account(pool, "payee"))
    other_payer, other_payee = (await new_account(pool, "other-payer", deposit_micro=2 * PRICE_MICRO),
                                await new_account(pool, "other-payee"))
    async with pool.acquire() as first:
        open_transaction = first.transaction()
        await open_transaction.start()
        await ledger.move(first, key="one-key", debit=payer, credit=payee, amount_micro=PRICE_MICRO,
                          kind="adjustment", now=NOW)
        batched = asyncio.ensure_future(gather_outcomes([
            batcher.move(key="one-key", debit=other_payer, credit=other_payee, amount_micro=PRICE_MICRO,
                         kind="adjustment", now=NOW),
            batcher.move(key="other-key", debit=other_payer, credit=other_payee, amount_micro=PRICE_MICRO,
                         kind="adjustment", now=NOW)]))
        for _ in range(500):  # until the batch waits on the uncommitted key
            if await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
                break
            await asyncio.sleep(0.01)
        await open_transaction.commit()
        outcomes = await batched
    assert [type(o).__name__ for o in outcomes] == ["IdempotencyConflict", "Transfer"]
    assert (await posted(pool, payee), await posted(pool, other_payee)) == (PRICE_MICRO, PRICE_MICRO)
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


# The review of decision 0021: errors a retry may cure reach the caller as PostgreSQL raised them,
# a lone item's key committed elsewhere is answered from that transfer, a hold naming a missing
# account is refused instead of sent again for ever, and no caller is left waiting.

DOOMED = """
CREATE FUNCTION doomed_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.idempotency_key LIKE 'doomed%' THEN
        RAISE EXCEPTION 'rolled back, as a deadlock would' USING ERRCODE = '{sqlstate}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER doomed_transfer BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION doomed_transfer();"""
UNDOOMED = "DROP TRIGGER doomed_transfer ON transfers; DROP FUNCTION doomed_transfer()"


@pytest.mark.parametrize("sqlstate, raised", [("40001", asyncpg.SerializationError),
                                              ("40P01", asyncpg.DeadlockDetectedError)])
async def test_an_item_rolled_back_alone_raises_postgresqls_own_error(pool, batcher, sqlstate, raised):
    """Class 40 rolled the transaction back whole: the caller (the AI settlement) retries on that
    error (gateway.core.failures.STORE_FAILURES), so it is not wrapped as a permanent ItemFailed."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    await pool.execute(DOOMED.format(sqlstate=sqlstate))
    try:
        alone = await gather_outcomes([batcher.move(key="doomed-alone", debit=buyer, credit=revenue,
                                                    amount_micro=PRICE_MICRO, kind="purchase", now=NOW)])
        among = await gather_outcomes(
            batcher.move(key=f"{'doomed' if number == 1 else 'buy'}-{number}", debit=buyer, credit=revenue,
                         amount_micro=PRICE_MICRO, kind="purchase", now=NOW) for number in range(3))
    finally:
        await pool.execute(UNDOOMED)
    assert type(alone[0]) is raised and not isinstance(alone[0], ledger.LedgerError)
    assert [type(o) for o in among] == [ledger.Transfer, raised, ledger.Transfer]
    assert await posted(pool, buyer) == 8 * PRICE_MICRO
    assert (await ledger.reconcile(pool)).ok


async def test_a_read_only_database_fails_every_item_with_postgresqls_own_error(servers, database):
    """A standby after a failover refuses every write (25006): an outage, not each item's fault."""
    revenue = await ledger.system_id(database, "revenue")
    buyer = await new_account(database, "buyer", deposit_micro=10 * PRICE_MICRO)
    standby = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=2,
                                        server_settings={"default_transaction_read_only": "on"})
    try:
        batcher = ledger.Batcher(standby)
        alone = await gather_outcomes([batcher.move(key="buy-alone", debit=buyer, credit=revenue,
                                                    amount_micro=PRICE_MICRO, kind="purchase", now=NOW)])
        many = await gather_outcomes(
            batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                         kind="purchase", now=NOW) for number in range(3))
    finally:
        await standby.close()
    assert all(type(o) is asyncpg.ReadOnlySQLTransactionError for o in [*alone, *many]), [*alone, *many]
    assert await posted(database, buyer) == 10 * PRICE_MICRO
    assert (await ledger.reconcile(database)).ok


async def test_a_lone_items_key_committed_elsewhere_while_it_waits_is_its_conflict(pool, batcher):
    """As test_a_key_committed_elsewhere… with the item alone in its batch: its one statement fails
    with the unique violation, and the item, sent once more, finds the committed transfer."""
    payer, payee = (await new_account(pool, "payer", deposit_micro=PRICE_MICRO), await new_account(pool, "payee"))
    other_payer, other_payee = (await new_account(pool, "other-payer", deposit_micro=PRICE_MICRO),
                                await new_account(pool, "other-payee"))
    async with pool.acquire() as first:
        open_transaction = first.transaction()
        await open_transaction.start()
        await ledger.move(first, key="one-key", debit=payer, credit=payee, amount_micro=PRICE_MICRO,
                          kind="adjustment", now=NOW)
        batched = asyncio.ensure_future(gather_outcomes([
            batcher.move(key="one-key", debit=other_payer, credit=other_payee, amount_micro=PRICE_MICRO,
                         kind="adjustment", now=NOW)]))
        assert await a_lock_waited_on(pool)
        await open_transaction.commit()
        outcomes = await batched
    assert [type(o).__name__ for o in outcomes] == ["IdempotencyConflict"]
    assert (await posted(pool, payee), await posted(pool, other_payee)) == (PRICE_MICRO, 0)
    assert (await ledger.reconcile(pool)).ok


# Lanes (decision 0021, "Lanes"): a Batcher sends each lane's users in batches of their own, and an
# AI hold credits its user's revenue shard, so two lanes' batches lock no row in common.


async def funded_user_in_lane(pool, name: str, lane: int, lanes: int = 2) -> tuple[int, int]:
    """(user id, account id) of a new funded client whose id falls in `lane` of `lanes`."""
    for attempt in range(lanes + 1):
        account = await new_account(pool, f"{name}-{attempt}", deposit_micro=10 * PRICE_MICRO)
        user_id = await pool.fetchval("SELECT user_id FROM accounts WHERE id = $1", account)
        if user_id % lanes == lane:
            return user_id, account
    raise AssertionError("user ids are consecutive: one of lanes + 1 new users is in every lane")


async def ai_hold(pool, batcher: ledger.Batcher, key: str, user_id: int, account: int) -> ledger.Transfer:
    shard = await ledger.system_id(pool, ledger.revenue_shard(user_id))
    return await batcher.move(key=key, debit=account, credit=shard, amount_micro=PRICE_MICRO, kind="usage", now=NOW,
                              user_id=user_id, hold_until=LATER)


async def test_each_lane_sends_its_own_users_in_a_transaction_of_its_own(pool):
    batcher = ledger.Batcher(pool, lanes=2)
    people = [await funded_user_in_lane(pool, f"lane{number}", number % 2) for number in range(8)]
    holds = await asyncio.gather(*(ai_hold(pool, batcher, f"lane-hold-{n}", *who) for n, who in enumerate(people)))
    settled = await asyncio.gather(*(batcher.resolve(key=f"lane-post-{n}", hold_id=hold.id, now=NOW, post_micro=1,
                                                     user_id=people[n][0]) for n, hold in enumerate(holds)))
    assert (batcher.batches, batcher.items) == (4, 16)  # per lane: one batch of holds, one of settlements
    writes = await pool.fetch("SELECT user_id % 2 AS lane, xmin::text AS tx FROM transfers "
                              "WHERE idempotency_key LIKE 'lane-%' GROUP BY 1, 2")
    assert sorted(row["lane"] for row in writes) == [0, 0, 1, 1]  # two transactions per lane, none shared
    assert all(transfer.amount_micro == 1 for transfer in settled)
    assert (await ledger.reconcile(pool)).ok


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_batch_waiting_on_a_lock_holds_up_no_user_of_another_lane(pool, lanes):
    """One lane's batch waits on its user's row; the other lane's user is answered meanwhile. With
    one lane both are in the waiting batch (the contrast). Both users crediting one revenue row
    would hold the second lane up too: the shards keep the lanes' locks apart."""
    batcher = ledger.Batcher(pool, lanes=lanes)
    (waiting_user, waiting_account), (free_user, free_account) = [
        await funded_user_in_lane(pool, f"lock{lane}", lane) for lane in (0, 1)]
    async with pool.acquire() as blocker:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", waiting_account)
            waiting = asyncio.ensure_future(ai_hold(pool, batcher, "waits", waiting_user, waiting_account))
            free = asyncio.ensure_future(ai_hold(pool, batcher, "free", free_user, free_account))
            assert await a_lock_waited_on(pool)
            if lanes == 2:
                assert (await asyncio.wait_for(free, 10)).idempotency_key == "free"
            assert not free.done() if lanes == 1 else not waiting.done()
    assert [(await waiting).idempotency_key, (await free).idempotency_key] == ["waits", "free"]
    assert (await ledger.reconcile(pool)).ok


async def test_closing_waits_for_every_lane_and_a_lane_started_meanwhile(pool):
    """close() returns once no lane is sending: a lane held up by a lock, and a lane that starts while
    close() waits (a settlement still retrying) and is still held up when the first one is done."""
    batcher = ledger.Batcher(pool, lanes=2)
    (late_user, late_account), (first_user, first_account) = [
        await funded_user_in_lane(pool, f"closing{lane}", lane) for lane in (0, 1)]
    first_lock, late_lock = await pool.acquire(), await pool.acquire()
    try:
        for connection, account in ((first_lock, first_account), (late_lock, late_account)):
            await connection.execute("BEGIN; SELECT 1 FROM accounts WHERE id = %d FOR UPDATE" % account)
        first = asyncio.ensure_future(ai_hold(pool, batcher, "first", first_user, first_account))
        assert await a_lock_waited_on(pool)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        late = asyncio.ensure_future(ai_hold(pool, batcher, "late", late_user, late_account))
        await asyncio.sleep(0.2)
        await first_lock.execute("COMMIT")
        assert (await asyncio.wait_for(first, 10)).idempotency_key == "first"
        await asyncio.sleep(0.2)
        assert not closing.done() and not late.done()  # the late lane is still sending
        await late_lock.execute("COMMIT")
        await asyncio.wait_for(closing, 10)
        assert late.done() and late.result().idempotency_key == "late"
    finally:
        await pool.release(first_lock)
        await pool.release(late_lock)


async def test_closing_goes_on_past_a_cancelled_lane(pool):
    batcher = ledger.Batcher(pool, lanes=2)
    (first_user, first_account), (second_user, second_account) = [
        await funded_user_in_lane(pool, f"cancelled{lane}", lane) for lane in (0, 1)]
    async with pool.acquire() as blocker:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM accounts WHERE id = ANY($1::bigint[]) FOR UPDATE",
                                  [first_account, second_account])
            cancelled = asyncio.ensure_future(ai_hold(pool, batcher, "cancelled", first_user, first_account))
            kept = asyncio.ensure_future(ai_hold(pool, batcher, "kept", second_user, second_account))
            await asyncio.sleep(0.2)
            batcher.senders[0].cancel()
            closing = asyncio.ensure_future(batcher.close())
            await asyncio.sleep(0.2)
            assert not closing.done()
    await asyncio.wait_for(closing, 10)  # no CancelledError from lane 0's sender
    assert (await kept).idempotency_key == "kept"
    assert isinstance((await asyncio.gather(cancelled, return_exceptions=True))[0], asyncio.CancelledError)
    assert (await ledger.reconcile(pool)).ok


async def a_lock_waited_on(pool) -> bool:
    for _ in range(500):
        if await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
            return True
        await asyncio.sleep(0.01)
    return False


SNEAKED_HOLD = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro, phase,
                       kind, expires_at)
VALUES ('sneaked-hold', '', $1, $2, 1, 'pending', 'usage', $3) RETURNING id"""


async def test_a_hold_naming_an_account_that_does_not_exist_is_refused_not_sent_again_for_ever(pool, batcher):
    """Possible since the transfers keep no foreign key to accounts (0016): a hold written around
    the ledger. The batch answers as ledger_resolve does, in one batch; the item beside it is written."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    missing = 10**12
    hold_id = await pool.fetchval(SNEAKED_HOLD, missing, revenue, LATER)
    try:
        outcomes = await asyncio.wait_for(gather_outcomes([
            batcher.resolve(key="settle-sneaked", hold_id=hold_id, now=NOW, post_micro=1),
            batcher.move(key="buy", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase",
                         now=NOW)]), timeout=10)
        with pytest.raises(ledger.LedgerError) as direct:
            await resolve(pool, key="settle-sneaked-directly", hold_id=hold_id, post_micro=1)
    finally:
        await pool.execute("SET session_replication_role = replica;"
                           " DELETE FROM transfers WHERE idempotency_key = 'sneaked-hold';"
                           " RESET session_replication_role")
        await pool.execute("DELETE FROM open_holds WHERE hold_id = $1", hold_id)
    assert type(outcomes[0]) is ledger.LedgerError and str(outcomes[0]) == str(direct.value)
    assert str(outcomes[0]) == f"unknown account(s) [{missing}]"
    assert isinstance(outcomes[1], ledger.Transfer) and batcher.batches == 1
    assert await posted(pool, buyer) == 9 * PRICE_MICRO
    assert (await ledger.reconcile(pool)).ok


async def test_a_hold_committed_after_the_batch_locked_its_accounts_goes_in_the_next_batch(pool, batcher):
    """The one genuine 'retry': the batch waits on an account of its own while the hold commits."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    payer, payee = (await new_account(pool, "payer", deposit_micro=PRICE_MICRO), await new_account(pool, "payee"))
    revenue = await ledger.system_id(pool, "revenue")
    async with pool.acquire() as first:
        async with first.transaction():
            await first.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", payer)
            hold = await ledger.move(first, key="hold", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                                     kind="usage", now=NOW, hold_until=LATER)
            batched = asyncio.ensure_future(gather_outcomes([
                batcher.move(key="pay", debit=payer, credit=payee, amount_micro=PRICE_MICRO, kind="adjustment",
                             now=NOW),
                batcher.resolve(key="post", hold_id=hold.id, now=NOW, post_micro=PRICE_MICRO)]))
            assert await a_lock_waited_on(pool)
        outcomes = await asyncio.wait_for(batched, timeout=10)
    assert [type(o) for o in outcomes] == [ledger.Transfer, ledger.Transfer]
    assert batcher.batches == 2  # the resolution went again, alone, and was written
    assert (await posted(pool, buyer), await posted(pool, payee)) == (9 * PRICE_MICRO, PRICE_MICRO)
    assert (await ledger.reconcile(pool)).ok


ALWAYS_RETRY = """
CREATE FUNCTION always_retry(p_items jsonb)
RETURNS TABLE (item_index integer, status text, detail text, transfer transfers) LANGUAGE sql AS $$
    SELECT (ordinality - 1)::integer, 'retry', NULL, NULL::transfers
    FROM jsonb_array_elements(p_items) WITH ORDINALITY $$"""


async def test_an_item_answered_retry_batch_after_batch_fails_instead_of_looping(pool, batcher):
    """Whatever keeps answering 'retry' (here a stand-in for ledger_batch that always does), the
    Batcher sends the item a bounded number of times, then fails it: nothing was written."""
    revenue = await ledger.system_id(pool, "revenue")
    hold = await batcher.move(key="hold", debit=await new_account(pool, "buyer", deposit_micro=PRICE_MICRO),
                              credit=revenue, amount_micro=PRICE_MICRO, kind="usage", now=NOW, hold_until=LATER)
    await pool.execute(ALWAYS_RETRY)
    try:
        batcher.statement = ledger.batches.BATCH.replace("ledger_batch(", "always_retry(")
        batches_before = batcher.batches
        outcomes = await asyncio.wait_for(
            gather_outcomes([batcher.resolve(key="post", hold_id=hold.id, now=NOW, post_micro=1)]), timeout=10)
    finally:
        await pool.execute("DROP FUNCTION always_retry(jsonb)")
    assert type(outcomes[0]) is ledger.ItemFailed
    assert batcher.batches - batches_before == ledger.batches.RETRIES_MAX + 1
    assert (await ledger.reconcile(pool)).ok


async def test_an_item_that_cannot_be_sent_fails_its_caller_alone(pool, batcher):
    """An item that is not JSON fails its own call at once, not the batch it would have joined."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    outcomes = await gather_outcomes(
        batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase",
                     now=NOW, metadata={"odd": object()} if number == 1 else None) for number in range(3))
    assert [type(o) for o in outcomes][::2] == [ledger.Transfer, ledger.Transfer]
    assert isinstance(outcomes[1], TypeError)
    assert (batcher.batches, await posted(pool, buyer)) == (1, 8 * PRICE_MICRO)
    assert (await ledger.reconcile(pool)).ok


async def test_a_sender_cancelled_while_it_sends_items_alone_leaves_no_caller_waiting(pool, batcher):
    """The batch fails (a NUL jsonb refuses, before any lock), its items go alone; the second waits
    on a lock the test holds (its account's row) when the sender is cancelled: every caller gets an
    answer."""
    buyer = await new_account(pool, "buyer", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(pool, "revenue")
    async with pool.acquire() as first:
        async with first.transaction():
            await first.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", buyer)
            calls = asyncio.ensure_future(gather_outcomes(
                batcher.move(key=f"buy-{number}", debit=buyer, credit=revenue, amount_micro=PRICE_MICRO,
                             kind="purchase", now=NOW, metadata={"note": "a\x00b"} if number == 0 else None)
                for number in range(3)))
            assert await a_lock_waited_on(pool)
            sender = batcher.senders[0]  # one lane: every item in it
            assert sender is not None
            sender.cancel()
            outcomes = await asyncio.wait_for(calls, timeout=10)
    assert type(outcomes[0]) is ledger.ItemFailed
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[1:]), outcomes
    assert await posted(pool, buyer) == 10 * PRICE_MICRO
    assert (await ledger.reconcile(pool)).ok


# The differential test: random histories of holds (budgeted or not), posts and voids (twice,
# late, past the hold), twins and conflicting keys, overdrafts and unknown accounts, played item
# by item through the per-item functions and in batches through ledger_batch (tests/support/ledger_model.py).


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=ledger_model.histories)
async def test_batches_answer_and_move_money_as_the_per_item_functions_do(database, history):
    results = []
    async with database.acquire() as connection:
        books_transaction = connection.transaction()
        await books_transaction.start()
        try:
            books = await ledger_model.open_books(connection)
            for batched in (False, True):
                path = connection.transaction()  # a savepoint: each path starts from the same books
                await path.start()
                results.append(await ledger_model.play(connection, books, history, batched=batched))
                await path.rollback()
        finally:
            await books_transaction.rollback()
    one_by_one, batched = results
    assert batched["answers"] == one_by_one["answers"]
    assert batched["sums"] == one_by_one["sums"]
    # Balanced on both paths: no problem but the hold written around the ledger on purpose (a transfer
    # naming no account; its missing leg also leaves the pending totals apart, by its amount).
    assert batched["problems"] == one_by_one["problems"]
    assert books.problems[0] == f"transfer {books.orphan} names an account that does not exist"
    assert [p for p in batched["problems"] if not p.startswith("pending debits ")] == books.problems


# A gateway killed (kill -9) while batches are in flight (DESIGN: "gateway killed mid-load"): after the
# restart no transfer is lost or doubled. A whole AI answer is sent only after its settlement's batch
# committed, so every 200 the client got is charged exactly once, with its usage row; a hold whose
# settlement never committed is voided by the expiry sweep of the restarted gateway; a purchase the
# client saw is replayed, not repeated, when retried with its Idempotency-Key; reconcile passes.

HOLD_TTL_S = 4
AI_CALLS, AI_CONCURRENCY, PURCHASES = 400, 48, 300


async def serve(servers, mock_target: str, port: int, log):
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_OPENAI_BASE_URL=f"{mock_target}/openai/v1", TOLLGATE_OPENAI_API_KEYS="sk-mock-a",
                      TOLLGATE_AI_HOLD_TTL_S=str(HOLD_TTL_S), TOLLGATE_HOLD_EXPIRY_INTERVAL_S="0.2",
                      TOLLGATE_LEDGER_BATCH_WINDOW_S="0.002", TOLLGATE_IP_LIMIT_PER_MIN="0",
                      TOLLGATE_AUTH_IP_LIMIT_PER_MIN="0", TOLLGATE_PLAN_LIMITS_PER_MIN="free=0,premium=0,enterprise=0")
    process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "1", env=env,
                                                   stdout=subprocess.DEVNULL, stderr=log)
    await wait_until_up(f"http://127.0.0.1:{port}/health", process)
    return process


async def ai_calls(base: str, key: str, answered: dict[str, int], calls: int) -> None:
    """Whole chat calls, `AI_CONCURRENCY` at a time; each 200's request id is kept."""
    body = {"model": GPT, "messages": MESSAGES, "max_tokens": 20}
    queue = iter(range(calls))

    async def caller(session: aiohttp.ClientSession) -> None:
        for _ in queue:
            try:
                async with session.post(f"{base}/openai/v1/chat/completions", json=body,
                                        headers={"Authorization": f"Bearer {key}"}) as response:
                    await response.read()
                    answered[response.headers.get("X-Request-Id", "")] = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the gateway is gone

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(caller(session) for _ in range(AI_CONCURRENCY)))


async def buy(session: aiohttp.ClientSession, base: str, headers: dict, number: int) -> dict | None:
    try:
        async with session.post(f"{base}/api/v1/tokens/purchase", json={"duration_hours": 1},
                                headers={**headers, "Idempotency-Key": f"kill-{number}"}) as response:
            return {"status": response.status, **await response.json()}
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def purchases(session: aiohttp.ClientSession, base: str, headers: dict, answers: list) -> None:
    """Three buyers at a time, one purchase after another, until the gateway is gone."""
    numbers = iter(range(len(answers)))

    async def buyer() -> None:
        for number in numbers:
            answers[number] = await buy(session, base, headers, number)
            if answers[number] is None:
                return

    await asyncio.gather(*(buyer() for _ in range(3)))


async def a_batch_in_flight(pool, seconds_max: float = 10.0) -> bool:
    for _ in range(int(seconds_max * 500)):
        if await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                               " AND query LIKE '%ledger_batch(%' AND pid <> pg_backend_pid()"):
            return True
        await asyncio.sleep(0.002)
    return False


async def test_a_gateway_killed_mid_batch_loses_and_doubles_nothing(servers, database, mock_target, tmp_path):
    await database.execute("UPDATE model_prices SET input_per_mtok_micro = $2, output_per_mtok_micro = $3, "
                           "cached_input_per_mtok_micro = $4 WHERE model = $1", GPT, *AI_PRICE_MICRO)
    async with aiohttp.ClientSession() as session:
        await session.post(f"{mock_target}/_mock/ai/latency", json={"ms": 5, "chunk_ms": 0})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "wb")
    process = await serve(servers, mock_target, port, log)
    try:
        async with aiohttp.ClientSession() as session:
            user = await register_over_http(session, base)
        await deposit(database, user["id"], 1000)
        key = await api_keys.create(database, user_id=user["id"], name="", allowed_models=[], ip_allowlist=[],
                                    rpm_limit=0, tpm_limit=0, now=dt.datetime.now(dt.timezone.utc), expires_at=None)
        answered: dict[str, int] = {}
        load = asyncio.create_task(ai_calls(base, key.key, answered, AI_CALLS))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            first_answers: list = [None] * PURCHASES
            bought = asyncio.create_task(purchases(session, base, user["headers"], first_answers))
            while len(answered) < AI_CALLS // 4 and not load.done():
                await asyncio.sleep(0.005)
            assert await a_batch_in_flight(database), "no ledger batch was seen in flight"
            process.kill()  # SIGKILL: no cleanup, no last flush
            await process.wait()
            await bought
        await load
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert 0 < len(answered) < AI_CALLS, "the kill came before or after every call"
    process = await serve(servers, mock_target, port, log)
    try:
        async with aiohttp.ClientSession() as session:
            retried = [await buy(session, base, user["headers"], n) for n in range(PURCHASES)]
        for _ in range(int((HOLD_TTL_S + 10) / 0.1)):  # the restarted gateway's sweep voids what was left
            if not await database.fetchval(OPEN_HOLDS):
                break
            await asyncio.sleep(0.1)
    finally:
        await stop(process)
        log.close()
    assert await database.fetchval(OPEN_HOLDS) == 0
    await assert_every_answer_charged_once(database, answered)
    assert_purchases_replayed(first_answers, retried)
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'purchase'") == PURCHASES
    assert (await ledger.reconcile(database)).ok


OPEN_HOLDS = """SELECT count(*) FROM transfers p WHERE p.phase = 'pending'
AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""


async def assert_every_answer_charged_once(database, answered: dict[str, int]) -> None:
    rows = await database.fetch("""
        SELECT u.request_id, u.charged_micro, r.amount_micro, r.phase, r.idempotency_key
        FROM ai_usage u JOIN transfers r ON r.pending_id = u.hold_transfer_id""")
    by_request = {row["request_id"]: row for row in rows}
    assert len(by_request) == len(rows), "a call has two usage rows"
    ok = [request_id for request_id, status in answered.items() if status == 200]
    assert ok and all(request_id in by_request for request_id in ok), "an answered call is not charged"
    for row in rows:  # each usage row is its hold's one resolution, by the call's settlement
        assert row["idempotency_key"].endswith(":settle") and row["amount_micro"] == row["charged_micro"] > 0
    # Every other resolution is the sweep's void of a hold whose settlement never committed.
    others = await database.fetch("SELECT r.idempotency_key, r.phase FROM transfers r WHERE r.pending_id IS NOT NULL"
                                  " AND NOT EXISTS (SELECT 1 FROM ai_usage u WHERE u.hold_transfer_id = r.pending_id)")
    assert all(o["idempotency_key"].startswith("expire:") and o["phase"] == "void_pending" for o in others)


def assert_purchases_replayed(first_answers: list, retried: list) -> None:
    for first, again in zip(first_answers, retried):
        assert again is not None and again["status"] in (200, 201), again
        if first is not None and first["status"] == 201:  # the client saw it: the retry replays it
            assert (again["status"], again["transfer_id"], again["replayed"]) == (200, first["transfer_id"], True)


async def register_over_http(session: aiohttp.ClientSession, base: str) -> dict:
    body = {"email": "killed@example.com", "username": "killed", "password": "correct horse battery",
            "full_name": "Test User"}
    async with session.post(f"{base}/api/v1/auth/register", json=body) as response:
        assert response.status == 201, await response.text()
        user = await response.json()
    async with session.post(f"{base}/api/v1/auth/login",
                            json={"email": body["email"], "password": body["password"]}) as response:
        tokens = await response.json()
    return {**user, "headers": {"Authorization": f"Bearer {tokens['access_token']}"}}


# PostgreSQL's plan cache: a statement's first five runs get plans of their own, the sixth and later
# the generic plan it settled on (or, if that is dearer, their own again).
RUNS_TO_A_CACHED_PLAN = 6
# auto_explain sends the plan of every statement (those run inside functions and triggers too) to the
# client as a notice.
PLANS_AS_NOTICES = {"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": "0",
                    "auto_explain.log_nested_statements": "on", "auto_explain.log_level": "notice"}


async def test_a_connection_warmed_on_small_tables_plans_index_probes_not_table_scans(servers, database):
    """Migration 0021 (decision 0030): plans cached while the tables were small are kept for the
    connection's life, and a table scan planned then reads every row once the tables have grown.
    The money functions' plans probe indexes whatever the tables' size."""
    buyer = await new_account(database, "buyer", deposit_micro=100 * PRICE_MICRO)
    revenue = await ledger.system_id(database, "revenue")
    plans: list[str] = []
    connection = await asyncpg.connect(servers.database_url, server_settings=PLANS_AS_NOTICES)
    connection.add_log_listener(lambda _connection, message: plans.append(message.message))
    try:
        for number in range(RUNS_TO_A_CACHED_PLAN + 1):
            plans.clear()
            hold = ledger.transfers.move_item(key=f"hold-{number}", debit=buyer, credit=revenue,
                                              amount_micro=PRICE_MICRO, kind="usage", now=NOW, hold_until=LATER)
            hold.update(budgeted=True, api_key_id=None)
            [held] = await connection.fetch(ledger.batches.BATCH, ledger.batches.encode([hold]))
            post = ledger.transfers.resolve_item(key=f"post-{number}", hold_id=held["id"], now=NOW, post_micro=1)
            [resolved] = await connection.fetch(ledger.batches.BATCH, ledger.batches.encode([post]))
            assert (held["status"], resolved["status"]) == ("ok", "ok")
        seen = "\n".join(plans)
        assert "Index Scan using transfers_pkey" in seen and "Seq Scan" not in seen, seen
    finally:
        await connection.close()
    assert (await sums(database, buyer))["debits_posted"] == RUNS_TO_A_CACHED_PLAN + 1


MONEY_FUNCTIONS = ("ledger_batch", "ledger_move", "ledger_move_within_budgets", "ledger_resolve", "ledger_debt",
                   "follow_open_holds", "budget_hold_resolved")


async def test_every_money_function_carries_its_setting_in_its_own_definition(database):
    """A CREATE OR REPLACE that forgot the SET clause would drop it (decision 0030): each of the
    seven plans with sequential scans made dear, and they are all the functions that move money."""
    settings = dict(await database.fetch(
        "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND (p.proname LIKE 'ledger%' OR p.proname = ANY($1::text[]))",
        list(MONEY_FUNCTIONS)))
    assert sorted(settings) == sorted(MONEY_FUNCTIONS)
    assert settings.pop("ledger_batch") == ["enable_seqscan=off", "plan_cache_mode=force_generic_plan",
                                            "enable_hashjoin=off", "enable_mergejoin=off"]
    assert all(settings[name] == ["enable_seqscan=off"] for name in settings), settings


async def test_a_batch_plans_once_per_connection_and_joins_by_index_probes(servers, database):
    """Migrations 0023 and 0024: ledger_batch's statements run on their generic plans (parameters,
    not the call's values, in the plan: the accounts' update was planned again on every call when
    PostgreSQL chose), and the updates that join the batch's arrays with accounts and budgets probe
    each row's key, even on tables analyzed while small."""
    buyer = await new_account(database, "buyer", deposit_micro=100 * PRICE_MICRO)
    revenue = await ledger.system_id(database, "revenue")
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", buyer)
    await budgets.put(database, user_id=user_id, key_id=None, spec=budgets.BudgetSpec(50 * PRICE_MICRO, "day"),
                      now=NOW)
    await database.execute("ANALYZE accounts; ANALYZE budgets")
    plans: list[str] = []
    connection = await asyncpg.connect(servers.database_url,
                                       server_settings={**PLANS_AS_NOTICES, "auto_explain.log_verbose": "on"})
    connection.add_log_listener(lambda _connection, message: plans.append(message.message))
    try:
        for number in range(RUNS_TO_A_CACHED_PLAN + 1):
            plans.clear()
            hold = ledger.transfers.move_item(key=f"hold-{number}", debit=buyer, credit=revenue,
                                              amount_micro=PRICE_MICRO, kind="usage", now=NOW, hold_until=LATER,
                                              user_id=user_id)
            hold.update(budgeted=True, api_key_id=None)
            [held] = await connection.fetch(ledger.batches.BATCH, ledger.batches.encode([hold]))
            post = ledger.transfers.resolve_item(key=f"post-{number}", hold_id=held["id"], now=NOW, post_micro=1)
            [posted_row] = await connection.fetch(ledger.batches.BATCH, ledger.batches.encode([post]))
            assert (held["status"], posted_row["status"]) == ("ok", "ok")
    finally:
        await connection.close()
    for table, key in (("accounts", "accounts_pkey"), ("budgets", "budgets_pkey")):
        updates = [plan for plan in plans if f"UPDATE {table} " in plan.split("\n", 2)[1]]
        assert len(updates) == 2  # the hold's batch and the post's
        for update in updates:
            assert "Function Call: unnest($" in update and "Function Call: unnest('" not in update, update
            assert "Nested Loop" in update and f"Index Scan using {key}" in update, update
    assert not [plan for plan in plans if "Hash Join" in plan or "Merge Join" in plan or "Seq Scan" in plan], plans
    assert (await sums(database, buyer))["debits_posted"] == RUNS_TO_A_CACHED_PLAN + 1
    assert (await ledger.reconcile(database)).ok
