"""Many gateways: two `tollgate serve` processes on their own ports share one Redis and PostgreSQL
behind a round-robin load balancer; limits, device binding, revocation, budgets and holds hold
across them, and neither loses proxy sessions or metrics (decision 0024)."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import pytest

import ledger
from gateway.accounts import adjustments
from devkit.embedded import free_port
from tests.support.accounts import admin_headers, deposit, make_token, proxy_headers, register
from tests.support.ai import GPT, MESSAGES
from tests.support.fleet import start_instances, stop_instances, proxy_requests_counted, Fleet
from tests.support.load_balancer import BACKEND_HEADER, RoundRobin

PLAN_LIMITS = "free=1000,premium=5,enterprise=0"
CHAT = "/openai/v1/chat/completions"
CHAT_BODY = {"model": GPT, "max_tokens": 20, "messages": MESSAGES}


@pytest.fixture
async def fleet(servers, database, mock_target, aiohttp_server):
    """Two gateways (workers=1 each) behind the test's load balancer, stopped after the test."""
    balancer_port = free_port()
    url = f"http://127.0.0.1:{balancer_port}"
    instances = await start_instances(servers, mock_target, url, 2, TOLLGATE_PLAN_LIMITS_PER_MIN=PLAN_LIMITS)
    balancer = RoundRobin([instance.base for instance in instances])
    try:
        await aiohttp_server(balancer.app(), port=balancer_port)
        fleet = Fleet(instances, balancer, url)
        yield fleet
    finally:
        logs = await stop_instances(instances)
    for log in logs:
        assert b"Traceback" not in log, log.decode(errors="replace")[-3000:]


async def _get(session: aiohttp.ClientSession, path: str, headers: dict) -> tuple[int, str, dict]:
    async with session.get(path, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else {}
        return response.status, response.headers[BACKEND_HEADER], body


async def _mock(mock_target: str, path: str, body: dict | None = None, method: str = "POST"):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{mock_target}/_mock/ai/{path}", json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json() if response.content_type == "application/json" else None


async def test_the_per_token_and_per_user_limits_hold_over_both_instances(fleet, database):
    token = await make_token(database, email="premium@example.com", plan="premium")  # 5 a minute
    async with aiohttp.ClientSession(base_url=fleet.url) as session:
        answers = [await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token)) for _ in range(12)]
        passed = [backend for status, backend, _ in answers if status == 200]
        assert [status for status, _, _ in answers] == [200] * 5 + [429] * 7
        assert len(set(passed)) == 2  # both instances served some of the five
        assert all(body["error"]["code"] == "rate_limited" for status, _, body in answers if status == 429)

        # Per user on the desktop path: two tokens of one premium user, each on both instances.
        tokens = [await make_token(database, email="two-tokens@example.com", plan="premium") for _ in range(2)]
        answers = [await _get(session, "/api/v1/proxy/echo/x", proxy_headers(tokens[index // 2 % 2].token))
                   for index in range(12)]
        assert [status for status, _, _ in answers] == [200] * 5 + [429] * 7
        assert len({backend for status, backend, _ in answers if status == 200}) == 2

        # Per user on the AI routes: two keys of one premium user, calls alternating over instances.
        user = await register(session, "ai-premium@example.com")
        await database.execute("UPDATE users SET plan = 'premium' WHERE id = $1", user["id"])
        await deposit(database, user["id"], 100)
        keys = []
        for name in ("first", "second"):
            async with session.post("/api/v1/keys", headers=user["headers"], json={"name": name}) as response:
                assert response.status == 201, await response.text()
                keys.append((await response.json())["key"])
        statuses, backends = [], set()
        for index in range(12):
            async with session.post(CHAT, json=CHAT_BODY,
                                    headers={"Authorization": f"Bearer {keys[index % 2]}"}) as response:
                statuses.append(response.status)
                if response.status == 200:
                    backends.add(response.headers[BACKEND_HEADER])
    assert set(statuses) == {200, 429} and 1 <= statuses.count(200) <= 5, statuses
    assert len(backends) == 2


async def test_a_second_device_and_a_revoked_token_are_refused_by_the_other_instance(fleet, database):
    token = await make_token(database)
    async with aiohttp.ClientSession(base_url=fleet.url) as session:
        status, first, _ = await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token, "device-1"))
        assert status == 200
        status, second, body = await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token, "device-2"))
        assert (status, body["error"]["code"]) == (409, "device_conflict") and second != first
        status, _, _ = await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token, "device-1"))
        assert status == 200

        # Revoked through one instance (the strict turns of the balancer say which) ...
        headers = await admin_headers(session, database)  # one turn: the login
        status, _, _ = await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token, "device-1"))
        assert status == 200
        async with session.delete(f"/api/v1/admin/tokens/{token.id}", headers=headers) as response:
            assert response.status == 200, await response.text()
            revoker = response.headers[BACKEND_HEADER]
        # ... the next request, on the other one, is refused; and so is every one after it.
        answers = [await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token, "device-1"))
                   for _ in range(4)]
    assert answers[0][1] != revoker
    assert [(status, body["error"]["code"]) for status, _, body in answers] == [(401, "token_revoked")] * 4


async def _call(session: aiohttp.ClientSession, key: str) -> tuple[int, str, bytes]:
    async with session.post(CHAT, json=CHAT_BODY, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, response.headers[BACKEND_HEADER], await response.read()


async def _open_holds(database) -> int:
    return await database.fetchval("SELECT count(*) FROM transfers p WHERE p.phase = 'pending' "
                                   "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)")


async def _capped_key(session, user: dict, limit_micro: int) -> dict:
    async with session.post("/api/v1/keys", headers=user["headers"], json={
            "name": "capped", "budget": {"limit": ledger.format_micro(limit_micro), "period": "day"}}) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def test_budgets_and_balances_are_never_overshot_by_calls_spread_over_both_instances(
        fleet, database, mock_target):
    async with aiohttp.ClientSession(base_url=fleet.url) as session:
        user = await register(session, "budget@example.com")
        await deposit(database, user["id"], 1000)
        async with session.post("/api/v1/keys", headers=user["headers"], json={"name": "probe"}) as response:
            key = (await response.json())["key"]
        await _mock(mock_target, "reset")
        assert (await _call(session, key))[0] == 200
        hold = await database.fetchval("SELECT amount_micro FROM transfers WHERE phase = 'pending' "
                                       "ORDER BY id DESC LIMIT 1")
        capped = await _capped_key(session, user, 6 * hold)
        await _mock(mock_target, "latency", {"ms": 800, "chunk_ms": 1})  # every call is in flight at once
        on_budget = await asyncio.gather(*(_call(session, capped["key"]) for _ in range(24)))
        # Then the balance: exactly four holds' worth left (a correction is a new transfer).
        balance = (await ledger.balance(database, user["id"])).available_micro
        await _withdraw(database, user["id"], balance - 4 * hold)
        on_balance = await asyncio.gather(*(_call(session, key) for _ in range(16)))
    statuses = [status for status, _, _ in on_budget]
    assert 0 < statuses.count(200) <= 6 and set(statuses) <= {200, 402}, statuses
    assert len({backend for _, backend, _ in on_budget}) == 2  # the calls went to both instances
    row = await database.fetchrow("SELECT * FROM budgets WHERE api_key_id = $1", capped["id"])
    assert row["held_micro"] == 0 and row["spent_micro"] <= 6 * hold
    assert row["spent_micro"] == await database.fetchval(
        "SELECT coalesce(sum(charged_micro), 0)::bigint FROM ai_usage WHERE api_key_id = $1", capped["id"])
    statuses = [status for status, _, _ in on_balance]
    assert 0 < statuses.count(200) <= 4 and set(statuses) <= {200, 402}, statuses
    assert (await ledger.balance(database, user["id"])).available_micro >= 0
    assert await _open_holds(database) == 0


async def _withdraw(database, user_id: int, amount_micro: int) -> None:
    await adjustments.adjust_credits(database, user_id=user_id, amount_micro=-amount_micro, reason="test: fewer holds",
                                     key=f"test-withdraw:{user_id}", actor_id=None,
                                     now=dt.datetime.now(dt.timezone.utc))


async def test_each_instance_counts_its_own_requests_and_both_write_the_proxy_sessions(fleet, database):
    first, second = await make_token(database), await make_token(database, email="other@example.com")
    async with aiohttp.ClientSession(base_url=fleet.url) as session:
        for index in range(24):
            token = first if index % 4 < 2 else second  # each token's requests reach both instances
            status, _, _ = await _get(session, "/api/v1/proxy/echo/x", proxy_headers(token.token))
            assert status == 200
    counted = [await proxy_requests_counted(instance) for instance in fleet.instances]
    assert counted == [12.0, 12.0]
    await stop_instances(fleet.instances)  # SIGTERM: each flushes the sessions it still holds
    rows = await database.fetch("SELECT token_id, requests FROM proxy_sessions ORDER BY token_id")
    assert [(row["token_id"], row["requests"]) for row in rows] == [(first.id, 12), (second.id, 12)]
