"""Reconciliation: stored balances checked against their transfers, by the function and by the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path

import asyncpg
import pytest

import ledger
from gateway.accounts import budgets
from tests.support.ledger import NOW, PRICE_MICRO, move, new_account, resolve

# A key of alice's, written directly (its prefix and hash as the table demands).
NEW_KEY = ("INSERT INTO api_keys (user_id, name, key_hash, prefix, created_at)"
           " VALUES ($1, 'k', $2, 'tg_abcdefgh', now())")
# The console script as an operator runs it.
TOLLGATE = str(Path(sys.executable).parent / "tollgate")


@pytest.fixture
async def books(database) -> dict[str, int]:
    """Some history: a deposit, a purchase, a posted hold and an open hold."""
    alice = await new_account(database, "alice", deposit_micro=10 * PRICE_MICRO)
    revenue = await ledger.system_id(database, "revenue")
    await move(database, key="buy", debit=alice, credit=revenue, amount_micro=PRICE_MICRO, kind="purchase")
    for number in range(2):
        held = await move(database, key=f"hold-{number}", debit=alice, credit=revenue,
                          amount_micro=PRICE_MICRO, kind="usage", hold_until=NOW + dt.timedelta(minutes=5))
    await resolve(database, key="post", hold_id=held.id, post_micro=PRICE_MICRO // 2)
    user_id = await database.fetchval("SELECT user_id FROM accounts WHERE id = $1", alice)
    return {"alice": alice, "alice_user_id": user_id, "revenue": revenue}


@pytest.fixture
async def tamper(database):
    """Change one stored sum behind the ledger's back; restored after the test."""
    changed: list[tuple[int, str, int]] = []

    async def change(account_id: int, column: str, delta_micro: int) -> None:
        await database.execute(f"UPDATE accounts SET {column} = {column} + $2 WHERE id = $1",
                               account_id, delta_micro)
        changed.append((account_id, column, delta_micro))

    yield change
    for account_id, column, delta_micro in reversed(changed):
        await database.execute(f"UPDATE accounts SET {column} = {column} - $2 WHERE id = $1",
                               account_id, delta_micro)


async def test_balanced_books_reconcile(database, books):
    report = await ledger.reconcile(database)
    assert (report.ok, report.problems) == (True, [])


async def test_the_report_counts_accounts_and_transfers(database, books):
    report = await ledger.reconcile(database)
    assert (report.accounts, report.transfers) == (len(ledger.accounts.SYSTEM) + 1, 5)
    assert report.text() == f"{report.accounts} accounts, 5 transfers: balanced"


async def test_empty_books_reconcile(database):
    assert (await ledger.reconcile(database)).ok


async def test_reconcile_accepts_a_connection_as_well_as_a_pool(database, books):
    async with database.acquire() as connection:
        assert (await ledger.reconcile(connection)).ok


async def test_a_corrupted_system_balance_is_reported_by_account(database, books, tamper):
    await tamper(books["revenue"], "credits_posted", 1)
    report = await ledger.reconcile(database)
    assert not report.ok
    assert f"account {books['revenue']} (revenue): stored credits_posted" in report.text()


async def test_a_corrupted_user_balance_names_the_user(database, books, tamper):
    await tamper(books["alice"], "credits_posted", PRICE_MICRO)
    text = (await ledger.reconcile(database)).text()
    assert f"account {books['alice']} (user {books['alice_user_id']}): stored credits_posted" in text


async def test_a_corrupted_hold_sum_is_reported(database, books, tamper):
    await tamper(books["revenue"], "credits_pending", -PRICE_MICRO)
    text = (await ledger.reconcile(database)).text()
    assert f"account {books['revenue']} (revenue): stored credits_pending 0 != {PRICE_MICRO}" in text


async def test_a_one_sided_corruption_also_unbalances_the_books(database, books, tamper):
    await tamper(books["revenue"], "debits_posted", 7)
    problems = (await ledger.reconcile(database)).problems
    assert any(problem.startswith("posted debits") for problem in problems)


async def test_a_resolution_posting_more_than_its_hold_is_reported(servers, database, books):
    """Written around the ledger (INSERT is allowed), then removed the way the test reset does."""
    raw = await asyncpg.connect(servers.database_url)
    try:
        hold = await raw.fetchrow("SELECT * FROM transfers WHERE idempotency_key = 'hold-0'")
        sneaked = await raw.fetchval(
            "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,"
            " amount_micro, phase, kind, pending_id) VALUES ('sneak', '', $1, $2, $3, 'post_pending',"
            " 'usage', $4) RETURNING id", hold["debit_account_id"], hold["credit_account_id"],
            hold["amount_micro"] + 1, hold["id"])
        text = (await ledger.reconcile(raw)).text()
        assert f"transfer {sneaked} does not match the hold {hold['id']} it resolves" in text
    finally:
        await raw.execute("SET session_replication_role = replica;"
                          " DELETE FROM transfers WHERE idempotency_key = 'sneak';"
                          " RESET session_replication_role")
        # The hold is open again: back in the table of open holds the sneaked resolution took it from.
        await raw.execute("INSERT INTO open_holds (hold_id, expires_at, amount_micro) SELECT id, expires_at,"
                          " amount_micro FROM transfers WHERE idempotency_key = 'hold-0'")
        await raw.close()


@pytest.mark.parametrize("fault", ["no such account", "no such hold", "no such user"])
async def test_a_transfer_naming_an_account_hold_or_user_that_does_not_exist_is_reported(servers, database, books,
                                                                                        fault):
    """The transfers keep no foreign key to accounts or holds (migration 0016) or users (0022):
    reconcile looks."""
    raw = await asyncpg.connect(servers.database_url)
    try:
        missing = await raw.fetchval("SELECT max(id) + 1000 FROM transfers")
        if fault == "no such account":
            sneaked = await raw.fetchval(
                "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,"
                " amount_micro, phase, kind) VALUES ('sneak', '', $1, $2, 1, 'posted', 'adjustment') RETURNING id",
                books["revenue"], 10**12)
            expected = f"transfer {sneaked} names an account that does not exist"
        elif fault == "no such user":
            sneaked = await raw.fetchval(
                "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,"
                " amount_micro, phase, kind, user_id) VALUES ('sneak', '', $1, $2, 1, 'posted', 'adjustment', $3)"
                " RETURNING id", books["revenue"], books["alice"], 10**12)
            expected = f"transfer {sneaked} names a user that does not exist"
        else:
            sneaked = await raw.fetchval(
                "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,"
                " amount_micro, phase, kind, pending_id) VALUES ('sneak', '', $1, $2, 0, 'void_pending',"
                " 'usage', $3) RETURNING id", books["revenue"], books["revenue"] - 1, missing)
            expected = f"transfer {sneaked} does not match the hold {missing} it resolves"
        assert expected in (await ledger.reconcile(raw)).text()
    finally:
        await raw.execute("SET session_replication_role = replica;"
                          " DELETE FROM transfers WHERE idempotency_key = 'sneak';"
                          " RESET session_replication_role")
        await raw.close()


async def test_an_account_is_never_deleted(database, books):
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="accounts are never removed"):
        await database.execute("DELETE FROM accounts WHERE id = $1", books["revenue"])
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="accounts are never removed"):
        await database.execute("TRUNCATE accounts CASCADE")
    assert (await ledger.reconcile(database)).ok


async def test_an_accounts_id_never_changes(database, books):
    """The transfers name their accounts by id with no foreign key to follow a change (0016): an
    id changed would orphan them (migration 0017). The sums still change, through the ledger."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="an account's id never changes"):
        await database.execute("UPDATE accounts SET id = id + 1000000 WHERE id = $1", books["alice"])
    await database.execute("UPDATE accounts SET id = id WHERE id = $1", books["alice"])  # no change: allowed
    await move(database, key="after", debit=books["alice"], credit=books["revenue"], amount_micro=1, kind="purchase")
    assert await database.fetchval("SELECT count(*) FROM accounts WHERE id = $1", books["alice"]) == 1
    assert (await ledger.reconcile(database)).ok


# Budgets (migration 0013): each budget holds what its open holds hold, and a budget link lives from
# its hold to the hold's resolution.


@pytest.fixture
async def budgeted(database, books) -> dict[str, int]:
    """The books, plus a day budget of alice's and three holds within it: one posted by a batch, one
    voided directly (the trigger's give-back), one open."""
    await budgets.put(database, user_id=books["alice_user_id"], key_id=None,
                      spec=budgets.BudgetSpec(5 * PRICE_MICRO, "day"), now=NOW)
    batcher = ledger.Batcher(database)
    holds = [await batcher.move(key=f"budgeted-{number}", debit=books["alice"], credit=books["revenue"],
                                amount_micro=PRICE_MICRO, kind="usage", now=NOW, user_id=books["alice_user_id"],
                                hold_until=NOW + dt.timedelta(minutes=5), budgeted=True) for number in range(3)]
    await batcher.resolve(key="budgeted-post", hold_id=holds[0].id, now=NOW, post_micro=PRICE_MICRO // 4)
    await resolve(database, key="budgeted-void", hold_id=holds[1].id)
    budget_id = await database.fetchval("SELECT id FROM budgets")
    return {**books, "budget": budget_id, "open_hold": holds[2].id}


async def test_budgets_and_their_holds_reconcile(database, budgeted):
    row = await database.fetchrow("SELECT held_micro, spent_micro FROM budgets WHERE id = $1", budgeted["budget"])
    assert (row["held_micro"], row["spent_micro"]) == (PRICE_MICRO, PRICE_MICRO // 4)
    assert await database.fetchval("SELECT array_agg(hold_id) FROM budget_holds") == [budgeted["open_hold"]]
    assert (await ledger.reconcile(database)).ok


async def test_a_budget_holding_other_than_its_open_holds_is_reported(database, budgeted):
    await database.execute("UPDATE budgets SET held_micro = held_micro + 1 WHERE id = $1", budgeted["budget"])
    try:
        text = (await ledger.reconcile(database)).text()
    finally:
        await database.execute("UPDATE budgets SET held_micro = held_micro - 1 WHERE id = $1", budgeted["budget"])
    assert (f"budget {budgeted['budget']} (user {budgeted['alice_user_id']}): stored held {PRICE_MICRO + 1}"
            f" != {PRICE_MICRO} from its open holds") in text


async def test_a_budget_link_outliving_its_hold_is_reported(servers, database, budgeted):
    """A resolution written around the ledger and its trigger: the link stays, the budget still holds."""
    hold = budgeted["open_hold"]
    raw = await asyncpg.connect(servers.database_url)
    try:
        await raw.execute("SET session_replication_role = replica")  # no trigger: no give-back
        await raw.execute(
            "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro,"
            " phase, kind, pending_id) SELECT 'sneak', '', debit_account_id, credit_account_id, amount_micro,"
            " 'void_pending', kind, id FROM transfers WHERE id = $1", hold)
        await raw.execute("RESET session_replication_role")
        text = (await ledger.reconcile(raw)).text()
    finally:
        await raw.execute("SET session_replication_role = replica;"
                          " DELETE FROM transfers WHERE idempotency_key = 'sneak';"
                          " RESET session_replication_role")
        await raw.close()
    assert f"budget link of hold {hold}: the hold is resolved" in text
    assert f"budget {budgeted['budget']} (user {budgeted['alice_user_id']}): stored held {PRICE_MICRO} != 0" in text
    assert (await ledger.reconcile(database)).ok



async def test_a_budget_link_naming_no_hold_is_reported(database, budgeted):
    """budget_holds keeps no foreign key to transfers (migration 0019): reconcile looks."""
    missing = await database.fetchval("SELECT max(id) + 1000 FROM transfers")
    await database.execute("INSERT INTO budget_holds (hold_id, budget_ids, amount_micro) VALUES ($1, $2, 1)",
                           missing, [budgeted["budget"]])
    try:
        text = (await ledger.reconcile(database)).text()
    finally:
        await database.execute("DELETE FROM budget_holds WHERE hold_id = $1", missing)
    assert f"budget link of hold {missing}: the hold does not exist" in text
    assert (await ledger.reconcile(database)).ok


@pytest.mark.parametrize("column", ["user_id", "api_key_id", "hold_transfer_id"])
async def test_a_usage_row_naming_a_user_key_or_hold_that_does_not_exist_is_reported(database, books, column):
    """ai_usage keeps no foreign keys (migration 0019): the gateway writes the ids it has just
    authenticated or held, users and keys are never deleted, and reconcile looks."""
    hold = await database.fetchval("SELECT max(id) FROM transfers WHERE phase = 'pending'")
    key = await database.fetchval(NEW_KEY + " RETURNING id", books["alice_user_id"], b"\x01" * 32)
    values = {"user_id": books["alice_user_id"], "api_key_id": key, "hold_transfer_id": hold}
    insert = ("INSERT INTO ai_usage (request_id, user_id, api_key_id, hold_transfer_id, provider, model, outcome,"
              " created_at) VALUES ($1, $2, $3, $4, 'openai', 'gpt-4o-mini', 'ok', now()) RETURNING id")
    sound = await database.fetchval(insert, "sound", *values.values())
    values[column] = 10**12
    orphan = await database.fetchval(insert, "orphan", *values.values())
    try:
        text = (await ledger.reconcile(database)).text()
    finally:
        await database.execute("DELETE FROM ai_usage WHERE id = $1", orphan)
    missing = {"user_id": "user", "api_key_id": "key", "hold_transfer_id": "hold"}[column]
    assert f"usage row {orphan} names a {missing} that does not exist" in text
    assert f"usage row {sound} " not in text
    assert (await ledger.reconcile(database)).ok


@pytest.mark.parametrize("fault", ["missing", "resolved", "changed"])
async def test_a_table_of_open_holds_that_disagrees_with_the_transfers_is_reported(database, books, fault):
    """open_holds (migration 0020) is what the expiry sweep reads: a hold missing there would never
    expire, a resolved one there would be read for ever."""
    open_hold = await database.fetchval("SELECT id FROM transfers WHERE idempotency_key = 'hold-0'")
    posted_hold = await database.fetchval("SELECT id FROM transfers WHERE idempotency_key = 'hold-1'")
    edits = {"missing": ("DELETE FROM open_holds WHERE hold_id = $1", open_hold,
                         "INSERT INTO open_holds SELECT id, expires_at, amount_micro FROM transfers WHERE id = $1",
                         f"hold {open_hold} is missing from the table of open holds"),
             "resolved": ("INSERT INTO open_holds SELECT id, expires_at, amount_micro FROM transfers WHERE id = $1",
                          posted_hold, "DELETE FROM open_holds WHERE hold_id = $1",
                          f"hold {posted_hold} is not open but is in the table of open holds"),
             "changed": ("UPDATE open_holds SET amount_micro = amount_micro + 1 WHERE hold_id = $1", open_hold,
                         "UPDATE open_holds SET amount_micro = amount_micro - 1 WHERE hold_id = $1",
                         f"hold {open_hold} does not match its row in the table of open holds")}
    edit, hold_id, undo, expected = edits[fault]
    assert await database.fetchval("SELECT count(*) FROM open_holds") == 1
    await database.execute(edit, hold_id)
    try:
        report = await ledger.reconcile(database)
    finally:
        await database.execute(undo, hold_id)
    assert report.problems == [expected]
    assert (await ledger.reconcile(database)).ok


@pytest.mark.parametrize("table", ["users", "api_keys"])
async def test_users_and_api_keys_are_never_deleted_or_renumbered(database, books, table):
    """What the usage rows' ids name stays (migration 0019), as accounts do (0016, 0017)."""
    if table == "api_keys":
        await database.execute(NEW_KEY, books["alice_user_id"], b"\x02" * 32)
    row_id = await database.fetchval(f"SELECT max(id) FROM {table}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"{table} are never removed: DELETE"):
        await database.execute(f"DELETE FROM {table} WHERE id = $1", row_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"{table} are never removed: TRUNCATE"):
        await database.execute(f"TRUNCATE {table} CASCADE")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"{table} ids never change"):
        await database.execute(f"UPDATE {table} SET id = id + 1000000 WHERE id = $1", row_id)
    await database.execute(f"UPDATE {table} SET id = id WHERE id = $1", row_id)  # no change: allowed
    assert await database.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", row_id) == 1


# The command line


async def run_reconcile_command(servers) -> tuple[int, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOLLGATE_")}
    env["TOLLGATE_DATABASE_URL"] = servers.database_url
    process = await asyncio.create_subprocess_exec(TOLLGATE, "reconcile", env=env,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, output.decode()


async def test_the_reconcile_command_exits_zero_on_balanced_books(servers, database, books):
    code, output = await run_reconcile_command(servers)
    assert (code, output.strip()) == (0, f"{len(ledger.accounts.SYSTEM) + 1} accounts, 5 transfers: balanced")


async def test_the_reconcile_command_exits_one_with_a_report_on_corrupted_books(
        servers, database, books, tamper):
    await tamper(books["revenue"], "credits_posted", 1)
    code, output = await run_reconcile_command(servers)
    assert code == 1
    assert f"account {books['revenue']} (revenue): stored credits_posted" in output
