"""Debts against real PostgreSQL: a take-back beyond the balance is owed, blocks spending, and later
money repays it first; keyed once; append-only; reconciled."""

from __future__ import annotations

import asyncpg
import pytest

import ledger
from tests.support.ledger import NOW, PRICE_MICRO, move, new_account, sums


@pytest.fixture
async def clearing(database) -> int:
    return await ledger.system_id(database, "payment_clearing")


async def take_back(database, key: str, account: int, to: int, amount_micro: int) -> ledger.TakeBack:
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", account)
    async with database.acquire() as connection, connection.transaction():
        return await ledger.take_back(connection, key=key, account_id=account, to_account_id=to,
                                      amount_micro=amount_micro, user_id=user_id, now=NOW)


async def repay(database, key: str, account: int, to: int) -> int:
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", account)
    async with database.acquire() as connection, connection.transaction():
        return await ledger.repay(connection, key=key, account_id=account, to_account_id=to, user_id=user_id,
                                  now=NOW)


async def owed(database, account: int) -> int:
    return await database.fetchval("SELECT owed_micro FROM accounts WHERE id = $1", account)


async def test_a_take_back_within_the_balance_moves_it_all_and_owes_nothing(database, clearing):
    alice = await new_account(database, "alice", deposit_micro=10 * PRICE_MICRO)
    result = await take_back(database, "refund:1", alice, clearing, 4 * PRICE_MICRO)
    assert (result.taken_micro, result.owed_micro) == (4 * PRICE_MICRO, 0)
    assert (await sums(database, alice))["available"] == 6 * PRICE_MICRO
    assert await owed(database, alice) == 0


async def test_a_take_back_beyond_the_balance_owes_the_rest_and_blocks_spending(database, clearing):
    alice = await new_account(database, "alice", deposit_micro=3 * PRICE_MICRO)
    result = await take_back(database, "refund:1", alice, clearing, 10 * PRICE_MICRO)
    assert (result.taken_micro, result.owed_micro) == (3 * PRICE_MICRO, 7 * PRICE_MICRO)
    assert await owed(database, alice) == 7 * PRICE_MICRO
    # An admin's top-up of 5 leaves the user 2 short of the debt: nothing may be spent.
    adjustments = await ledger.system_id(database, "adjustments")
    await move(database, key="gift", debit=adjustments, credit=alice, amount_micro=5 * PRICE_MICRO, kind="adjustment")
    revenue = await ledger.system_id(database, "revenue")
    with pytest.raises(ledger.InsufficientBalance):
        await move(database, key="buy", debit=alice, credit=revenue, amount_micro=1, kind="purchase")
    balance = await ledger.balance(database, await database.fetchval(
        "SELECT user_id FROM accounts WHERE id = $1", alice))
    assert balance.owed_micro == 7 * PRICE_MICRO and balance.available_micro == -2 * PRICE_MICRO


async def test_later_money_repays_the_debt_first(database, clearing):
    alice = await new_account(database, "alice")
    await take_back(database, "refund:1", alice, clearing, 5 * PRICE_MICRO)
    await move(database, key="deposit:2", debit=clearing, credit=alice, amount_micro=8 * PRICE_MICRO, kind="deposit")
    assert await repay(database, "deposit:2:repay", alice, clearing) == 5 * PRICE_MICRO
    assert await owed(database, alice) == 0
    assert (await sums(database, alice))["available"] == 3 * PRICE_MICRO
    revenue = await ledger.system_id(database, "revenue")
    await move(database, key="buy", debit=alice, credit=revenue, amount_micro=3 * PRICE_MICRO, kind="purchase")


async def test_a_repayment_pays_what_the_balance_holds_and_owes_the_rest(database, clearing):
    alice = await new_account(database, "alice")
    await take_back(database, "refund:1", alice, clearing, 5 * PRICE_MICRO)
    await move(database, key="deposit:2", debit=clearing, credit=alice, amount_micro=2 * PRICE_MICRO, kind="deposit")
    assert await repay(database, "deposit:2:repay", alice, clearing) == 2 * PRICE_MICRO
    assert await owed(database, alice) == 3 * PRICE_MICRO
    assert (await sums(database, alice))["available"] == 0


async def test_the_same_key_takes_back_and_repays_once(database, clearing):
    alice = await new_account(database, "alice", deposit_micro=2 * PRICE_MICRO)
    first = await take_back(database, "refund:1", alice, clearing, 5 * PRICE_MICRO)
    again = await take_back(database, "refund:1", alice, clearing, 5 * PRICE_MICRO)
    assert not first.replayed and again.replayed
    assert await owed(database, alice) == 3 * PRICE_MICRO
    await move(database, key="deposit:2", debit=clearing, credit=alice, amount_micro=9 * PRICE_MICRO, kind="deposit")
    assert await repay(database, "deposit:2:repay", alice, clearing) == 3 * PRICE_MICRO
    assert await repay(database, "deposit:2:repay", alice, clearing) == 0
    assert (await sums(database, alice))["available"] == 6 * PRICE_MICRO


async def test_the_database_refuses_to_change_or_delete_a_debt(database, clearing):
    alice = await new_account(database, "alice")
    await take_back(database, "refund:1", alice, clearing, PRICE_MICRO)
    for statement in ("UPDATE debts SET amount_micro = 1", "DELETE FROM debts", "TRUNCATE debts"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await database.execute(statement)


async def test_reconcile_reports_an_owed_sum_that_its_debts_do_not_explain(database, clearing):
    alice = await new_account(database, "alice")
    await take_back(database, "refund:1", alice, clearing, PRICE_MICRO)
    await database.execute("UPDATE accounts SET owed_micro = owed_micro - 1 WHERE id = $1", alice)
    report = await ledger.reconcile(database)
    await database.execute("UPDATE accounts SET owed_micro = owed_micro + 1 WHERE id = $1", alice)
    assert f"stored owed {PRICE_MICRO - 1} != {PRICE_MICRO} from debts" in report.text()
