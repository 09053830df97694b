"""/api/v1/keys end to end: create (shown once), list, revoke."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.support.accounts import register
from tests.support.ai import MESSAGES, start
from tests.support.api import error_code

KEYS = "/api/v1/keys"


async def test_a_key_is_shown_once_stored_hashed_and_listed_by_prefix(gateway, database):
    user = await register(gateway, "dev@example.com")
    response = await gateway.post(KEYS, headers=user["headers"], json={
        "name": "laptop", "allowed_models": ["gpt-4o-mini"], "ip_allowlist": ["127.0.0.1", "10.0.0.0/8"],
        "rpm_limit": 60, "tpm_limit": 10000, "expires_in_hours": 24})
    assert response.status == 201, await response.text()
    created = await response.json()
    key = created["key"]
    assert key.startswith("tg_") and len(key) == 46 and created["prefix"] == key[:11]
    assert created["ip_allowlist"] == ["127.0.0.1/32", "10.0.0.0/8"]
    row = await database.fetchrow("SELECT key_hash, prefix FROM api_keys WHERE id = $1", created["id"])
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key.encode() not in bytes(row["key_hash"]) and row["prefix"] == key[:11]
    listed = (await (await gateway.get(KEYS, headers=user["headers"])).json())["items"]
    assert [(k["id"], k["prefix"], k["active"]) for k in listed] == [(created["id"], key[:11], True)]
    assert "key" not in listed[0]
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'api_key.create'") == 1


@pytest.mark.parametrize("payload, code", [
    ({"name": "x" * 101}, "invalid_field"),
    ({"name": 5}, "invalid_field"),
    ({"allowed_models": "gpt-4o"}, "invalid_field"),
    ({"allowed_models": [""]}, "invalid_field"),
    ({"allowed_models": [1, 2]}, "invalid_field"),
    ({"ip_allowlist": ["300.1.1.1"]}, "invalid_field"),
    ({"ip_allowlist": ["not an ip"]}, "invalid_field"),
    ({"rpm_limit": -1}, "invalid_field"),
    ({"tpm_limit": 10**12}, "invalid_field"),
    ({"rpm_limit": "60"}, "invalid_field"),
    ({"expires_in_hours": 0}, "invalid_field"),
    ({"expires_in_hours": 1.5}, "invalid_field"),
    ({"colour": "red"}, "unknown_field"),
])
async def test_bad_key_requests_are_400_and_create_nothing(gateway, database, payload, code):
    user = await register(gateway, "bad@example.com")
    response = await gateway.post(KEYS, headers=user["headers"], json=payload)
    assert (response.status, await error_code(response)) == (400, code)
    assert await database.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_keys_need_a_login(gateway, database):
    assert (await gateway.post(KEYS, json={})).status == 401
    assert (await gateway.get(KEYS)).status == 401


async def test_another_users_key_cannot_be_revoked(gateway, database):
    owner = await register(gateway, "owner@example.com")
    other = await register(gateway, "other@example.com")
    created = await (await gateway.post(KEYS, headers=owner["headers"], json={})).json()
    for path in (f"{KEYS}/{created['id']}", f"{KEYS}/99999", f"{KEYS}/abc", f"{KEYS}/-1"):
        response = await gateway.delete(path, headers=other["headers"])
        assert (response.status, await error_code(response)) == (404, "key_not_found"), path
    assert await database.fetchval("SELECT revoked_at FROM api_keys") is None
    assert (await gateway.delete(f"{KEYS}/{created['id']}", headers=owner["headers"])).status == 200
    listed = (await (await gateway.get(KEYS, headers=owner["headers"])).json())["items"]
    assert listed[0]["active"] is False and listed[0]["revoked_at"]


# -- lifecycle: change, rotate (issue 11) -------------------------------------------------------

CHAT = "/openai/v1/chat/completions"


async def _chat(stack, key: str, model: str = "gpt-4o-mini") -> tuple[int, str]:
    response = await stack.gateway.post(CHAT, headers={"Authorization": f"Bearer {key}"}, json={
        "model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    body = await response.json()
    return response.status, (body.get("error") or {}).get("code", "")


async def _key_id(stack) -> int:
    listed = await (await stack.gateway.get(KEYS, headers=stack.user["headers"])).json()
    return listed["items"][0]["id"]


async def _patch(stack, key_id: int, body: dict):
    response = await stack.gateway.patch(f"{KEYS}/{key_id}", headers=stack.user["headers"], json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_patched_model_list_applies_on_the_next_call(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    assert await _chat(stack, stack.key) == (200, "")  # the key's record is now cached in Redis
    changed = await _patch(stack, await _key_id(stack), {"allowed_models": ["claude-haiku-4-5"]})
    assert changed["allowed_models"] == ["claude-haiku-4-5"] and changed["name"] == "tests"
    assert await _chat(stack, stack.key) == (403, "model_not_allowed")
    await _patch(stack, await _key_id(stack), {"allowed_models": []})
    assert await _chat(stack, stack.key) == (200, "")


async def test_a_patched_rpm_applies_on_the_next_call(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    for _ in range(3):
        assert await _chat(stack, stack.key) == (200, "")
    await _patch(stack, await _key_id(stack), {"rpm_limit": 3})
    assert await _chat(stack, stack.key) == (429, "rate_limit_exceeded")


async def test_a_patch_changes_only_the_fields_given_and_is_audited(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key_id = await _key_id(stack)
    changed = await _patch(stack, key_id, {"name": "renamed", "tpm_limit": 500, "expires_in_hours": 2,
                                           "budget": {"limit": "2.5", "period": "week"}})
    assert (changed["name"], changed["tpm_limit"], changed["rpm_limit"]) == ("renamed", 500, 0)
    assert changed["expires_at"] and changed["budget"]["limit"] == "2.5"
    assert (await _patch(stack, key_id, {"budget": None}))["budget"] is None
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'api_key.update'") == 2


async def test_a_rotated_key_works_during_the_grace_period_and_is_refused_after(gateway_factory, mock_target,
                                                                              database, clock):
    stack = await start(gateway_factory, mock_target, database, api_key_rotation_grace_s=600)
    old = stack.key
    assert await _chat(stack, old) == (200, "")
    response = await stack.gateway.post(f"{KEYS}/{await _key_id(stack)}/rotate", headers=stack.user["headers"])
    assert response.status == 200, await response.text()
    rotated = await response.json()
    new = rotated["key"]
    assert new != old and rotated["previous_secret_expires_at"] and rotated["rotated_at"]
    assert await _chat(stack, new) == (200, "") and await _chat(stack, old) == (200, "")
    clock.advance(601)
    assert await _chat(stack, old) == (401, "invalid_api_key")
    assert await _chat(stack, new) == (200, "")
    assert {row["api_key_id"] for row in await database.fetch("SELECT api_key_id FROM ai_usage")} == {
        rotated["id"]}  # one key: its usage and budget carry across secrets


async def test_a_second_rotation_refuses_the_first_secret_at_once(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    first = stack.key
    key_id = await _key_id(stack)
    assert await _chat(stack, first) == (200, "")
    second = (await (await stack.gateway.post(f"{KEYS}/{key_id}/rotate", headers=stack.user["headers"])).json())
    assert await _chat(stack, first) == (200, "")  # in its grace period
    await stack.gateway.post(f"{KEYS}/{key_id}/rotate", headers=stack.user["headers"])
    assert await _chat(stack, first) == (401, "invalid_api_key")
    assert await _chat(stack, second["key"]) == (200, "")  # the grace period is now the second's


async def test_revoking_a_rotated_key_refuses_both_secrets(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key_id = await _key_id(stack)
    new = (await (await stack.gateway.post(f"{KEYS}/{key_id}/rotate", headers=stack.user["headers"])).json())["key"]
    assert await _chat(stack, new) == (200, "") and await _chat(stack, stack.key) == (200, "")
    assert (await stack.gateway.delete(f"{KEYS}/{key_id}", headers=stack.user["headers"])).status == 200
    assert await _chat(stack, new) == (401, "invalid_api_key")
    assert await _chat(stack, stack.key) == (401, "invalid_api_key")
    rotate = await stack.gateway.post(f"{KEYS}/{key_id}/rotate", headers=stack.user["headers"])
    assert (rotate.status, await error_code(rotate)) == (404, "key_not_found")


async def test_another_users_key_cannot_be_patched_or_rotated(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key_id = await _key_id(stack)
    other = await register(stack.gateway, "other@example.com")
    for response in (await stack.gateway.patch(f"{KEYS}/{key_id}", headers=other["headers"], json={"name": "x"}),
                     await stack.gateway.post(f"{KEYS}/{key_id}/rotate", headers=other["headers"])):
        assert (response.status, await error_code(response)) == (404, "key_not_found")
    assert await database.fetchval("SELECT name FROM api_keys WHERE id = $1", key_id) == "tests"


async def _lock_waiters(database, fragment: str) -> int:
    """Backends of the test's database waiting on a row lock while running a statement containing `fragment`."""
    return await database.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND position($1 in query) > 0", fragment)


async def _until(predicate, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_budget_patch_while_the_keys_call_settles_neither_deadlocks_nor_loses_the_charge(
        gateway_factory, mock_target, database):
    """The settlement locks the call's budget rows (the hold's resolution trigger) and then, writing its
    usage row, takes a key-share lock on the key (the row's foreign key); a PATCH that locked the key
    FOR UPDATE and then wanted the budget row closed a cycle: PostgreSQL aborted one of them (the
    settlement: an unbilled call, its hold left to the expiry sweep; or the PATCH)."""
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    created = await stack.gateway.post(KEYS, headers=stack.user["headers"],
                                       json={"name": "capped", "budget": {"limit": "500", "period": "day"}})
    key, key_id = (body := await created.json())["key"], body["id"]
    budget_id = await database.fetchval("SELECT id FROM budgets WHERE api_key_id = $1", key_id)
    await stack.control("latency", {"ms": 1500, "chunk_ms": 10})  # in flight while the test takes its lock
    call = asyncio.ensure_future(stack.gateway.post(
        "/openai/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "max_tokens": 20, "stream": True, "messages": MESSAGES}))
    await _until(lambda: database.fetchval("SELECT count(*) = 1 FROM budget_holds"))
    async with database.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM budgets WHERE id = $1 FOR UPDATE", budget_id)
        await _until(lambda: _lock_waiters(database, "ledger_batch"))  # the settlement waits for the budget
        patch = asyncio.ensure_future(stack.gateway.patch(
            f"{KEYS}/{key_id}", headers=stack.user["headers"], json={"budget": {"limit": "400", "period": "day"}}))
        await _until(lambda: _lock_waiters(database, "INSERT INTO budgets"))  # so does the PATCH, key locked
        await transaction.commit()
    patched, answered = await patch, await call
    assert patched.status == 200, await patched.text()
    assert answered.status == 200 and b"[DONE]" in await answered.read()
    await _until(lambda: database.fetchval("SELECT count(*) = 0 FROM budget_holds"))
    charged = await database.fetchval("SELECT charged_micro FROM ai_usage WHERE api_key_id = $1", key_id)
    assert charged > 0 and await stack.open_holds() == 0
    row = await database.fetchrow("SELECT held_micro, spent_micro, limit_micro FROM budgets WHERE id = $1", budget_id)
    assert (row["held_micro"], row["spent_micro"], row["limit_micro"]) == (0, charged, 400_000_000)
