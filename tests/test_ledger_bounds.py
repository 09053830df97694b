"""Account totals stay far inside bigint (ATTACK-2026-12-01 L10; decision 0014): a transfer that would
take a user's balance or any account's running sum past its bound is refused with 422
amount_out_of_range, written nowhere, and every other account keeps working."""

from __future__ import annotations

import pytest

import ledger
from gateway.accounts import users
from tests.conftest import deposit, register

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


async def test_the_adjust_command_reports_an_out_of_range_amount(servers, database):
    import subprocess

    from tests.test_processes import run_cli

    user_id = await users.ensure_client(database, email="cli@example.com")
    for _ in range(10):  # nearly 10^10 credits, the most a balance may hold
        await deposit(database, user_id, 999_999_999)
    done = run_cli(servers, "adjust", "--email", "cli@example.com", "--credits", MOST, "--reason", "r")
    assert done.returncode == 1 and "past the most an account may hold" in done.stderr
    assert "Traceback" not in done.stderr
    assert isinstance(done, subprocess.CompletedProcess)
