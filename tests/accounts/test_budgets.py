"""Budgets: credit caps per key and per user over a period, held atomically with the AI call's hold,
given back on void and expiry, corrected on post, shown on the key, alerted once per window."""

from __future__ import annotations

import asyncio
import datetime as dt

import ledger
from gateway.accounts import budgets, users
from gateway.core import metrics
from tests.support.accounts import admin_headers, login, register
from tests.support.ai import GPT, MESSAGES, start

CHAT = "/openai/v1/chat/completions"
STREAM_BODY = {"model": GPT, "max_tokens": 20, "stream": True, "messages": MESSAGES}


async def _call(stack, key: str, body: dict = STREAM_BODY, path: str = CHAT, headers: dict | None = None):
    response = await stack.gateway.post(path, json=body, headers=headers or {"Authorization": f"Bearer {key}"})
    return response.status, await response.read()


async def _hold_amount(stack) -> int:
    """What one call of STREAM_BODY holds: placed by a probe call on the stack's own key."""
    status, _ = await _call(stack, stack.key)
    assert status == 200
    return await stack.database.fetchval(
        "SELECT amount_micro FROM transfers WHERE phase = 'pending' ORDER BY id DESC LIMIT 1")


async def _key_with_budget(stack, limit_micro: int, period: str = "day", **extra) -> tuple[str, int]:
    response = await stack.gateway.post("/api/v1/keys", headers=stack.user["headers"], json={
        "name": "capped", "budget": {"limit": ledger.format_micro(limit_micro), "period": period, **extra}})
    assert response.status == 201, await response.text()
    created = await response.json()
    return created["key"], created["id"]


async def _budget_row(database, key_id: int):
    return await database.fetchrow("SELECT * FROM budgets WHERE api_key_id = $1", key_id)


async def _charged_on_key(database, key_id: int) -> int:
    return await database.fetchval("SELECT coalesce(sum(charged_micro), 0)::bigint FROM ai_usage WHERE api_key_id = $1",
                                   key_id)


async def test_fifty_parallel_streams_on_a_budget_for_ten_holds_run_at_most_ten(gateway_factory, mock_target,
                                                                               database):
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    hold = await _hold_amount(stack)
    key, key_id = await _key_with_budget(stack, 10 * hold)
    await stack.control("requests", method="DELETE")
    await stack.control("latency", {"ms": 1500, "chunk_ms": 20})  # every call is in flight at once
    results = await asyncio.gather(*(_call(stack, key) for _ in range(50)))
    succeeded = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status == 402]
    assert 0 < len(succeeded) <= 10 and len(succeeded) + len(refused) == 50
    assert all(b'"code":"budget_exceeded"' in body and b'"insufficient_quota"' in body for body in refused)
    assert len(await stack.control("requests", method="GET")) == len(succeeded)  # only these went upstream
    row = await _budget_row(database, key_id)
    assert row["held_micro"] == 0 and row["spent_micro"] <= 10 * hold
    assert row["spent_micro"] == await _charged_on_key(database, key_id)
    assert await database.fetchval("SELECT count(*) FROM budget_holds") == 0
    assert await stack.open_holds() == 0


async def test_a_refusal_comes_in_each_providers_own_shape(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key, _ = await _key_with_budget(stack, 1)
    status, body = await _call(stack, key, {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MESSAGES},
                               "/anthropic/v1/messages", {"x-api-key": key})
    assert status == 402 and b'"billing_error"' in body and b"budget" in body
    status, body = await _call(stack, key, {"contents": [{"parts": [{"text": "hi"}]}]},
                               "/gemini/v1beta/models/gemini-2.0-flash:generateContent", {"x-goog-api-key": key})
    assert status == 402 and b'"FAILED_PRECONDITION"' in body
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_a_users_budget_caps_all_their_keys(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    hold = await _hold_amount(stack)
    spent = await database.fetchval("SELECT coalesce(sum(charged_micro), 0)::bigint FROM ai_usage")
    headers = await admin_headers(stack.gateway, database)
    response = await stack.gateway.put(f"/api/v1/admin/users/{stack.user['id']}/budget", headers=headers,
                                       json={"limit": ledger.format_micro(spent + hold), "period": "month"})
    assert response.status == 200, await response.text()
    shown = (await response.json())["budget"]
    assert shown["spent"] == ledger.format_micro(spent) and shown["period"] == "month"
    other = await stack.new_key(name="second")
    assert (await _call(stack, other))[0] == 200
    status, body = await _call(stack, stack.key)  # what is left is less than a whole hold now
    assert status == 402 and b"user's month budget" in body
    mine = await (await stack.gateway.get("/api/v1/users/me/budget", headers=stack.user["headers"])).json()
    assert ledger.parse_credits(mine["budget"]["spent"]) == await database.fetchval(
        "SELECT sum(charged_micro)::bigint FROM ai_usage")


async def test_an_upstream_failure_gives_the_hold_back_to_the_budget(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key, key_id = await _key_with_budget(stack, 10_000_000)
    await stack.control("faults", {"mode": "500", "count": 1})
    status, _ = await _call(stack, key, {**STREAM_BODY, "stream": False})
    assert status == 500
    row = await _budget_row(database, key_id)
    assert (row["held_micro"], row["spent_micro"]) == (0, 0)


async def test_the_expiry_sweep_gives_an_abandoned_hold_back(database):
    user_id = await users.ensure_client(database, email="sweep@example.com")
    account = await ledger.user_account(database, user_id)
    now = dt.datetime.now(dt.timezone.utc)
    async with database.acquire() as connection:
        await ledger.move(connection, key="sweep-fund", debit=await ledger.system_id(database, "payment_clearing"),
                          credit=account, amount_micro=5_000_000, kind="deposit", now=now, user_id=user_id)
        await budgets.put(connection, user_id=user_id, key_id=None, spec=budgets.BudgetSpec(3_000_000, "total"),
                          now=now)
        hold = await ledger.move(connection, key="sweep-hold", debit=account,
                                 credit=await ledger.system_id(database, "revenue"), amount_micro=2_000_000,
                                 kind="usage", now=now, user_id=user_id, hold_until=now + dt.timedelta(seconds=1),
                                 statement=budgets.BUDGETED_MOVE, extra=(None,))
        assert await database.fetchval("SELECT held_micro FROM budgets") == 2_000_000
        assert await ledger.expire_holds(connection, now=now + dt.timedelta(seconds=2)) == 1
    assert hold.amount_micro == 2_000_000
    assert await database.fetchval("SELECT held_micro + spent_micro FROM budgets") == 0


async def test_the_spend_so_far_shows_on_the_key_and_a_new_day_starts_afresh(gateway_factory, mock_target,
                                                                            database, clock):
    stack = await start(gateway_factory, mock_target, database)
    key, key_id = await _key_with_budget(stack, 10_000_000, "day")
    assert (await _call(stack, key))[0] == 200
    listed = (await (await stack.gateway.get("/api/v1/keys", headers=stack.user["headers"])).json())["items"]
    budget = next(item for item in listed if item["id"] == key_id)["budget"]
    charged = await _charged_on_key(database, key_id)
    assert charged > 0 and budget["spent"] == ledger.format_micro(charged) and budget["held"] == "0"
    assert budget["resets_at"] and budget["limit"] == "10"
    clock.advance(24 * 3600)
    headers = (await login(stack.gateway, "sdk@example.com"))["headers"]  # the day's login has expired
    listed = (await (await stack.gateway.get("/api/v1/keys", headers=headers)).json())["items"]
    assert next(item for item in listed if item["id"] == key_id)["budget"]["spent"] == "0"


async def test_an_alert_is_audited_and_counted_once_per_window(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    hold = await _hold_amount(stack)
    key, key_id = await _key_with_budget(stack, 2 * hold, alert_percent=1)
    alerts = metrics.labelled(metrics.BUDGET_ALERTS, "key")
    before = alerts._value.get()
    assert (await _call(stack, key))[0] == 200
    now = dt.datetime.now(dt.timezone.utc)
    assert await budgets.alert_once(database, now) == 1
    assert await budgets.alert_once(database, now) == 0
    entry = await database.fetchrow("SELECT * FROM audit_log WHERE action = 'budget.alert'")
    assert entry["target_type"] == "key_budget" and entry["target_id"] == str(key_id)
    assert alerts._value.get() == before + 1


async def test_bad_budgets_are_400_and_create_nothing(gateway, database):
    user = await register(gateway, "budget@example.com")
    for budget in ({"limit": "0", "period": "day"}, {"limit": "5", "period": "year"}, {"limit": 5, "period": "day"},
                   {"limit": "5", "period": "day", "alert_percent": 101}, {"limit": "5", "period": "day", "x": 1},
                   "5"):
        response = await gateway.post("/api/v1/keys", headers=user["headers"], json={"budget": budget})
        assert response.status == 400, budget
    assert await database.fetchval("SELECT count(*) FROM api_keys") == 0
