"""API keys on the AI routes: odd credentials, revocation, disabled users, RPM/TPM limits, Redis down."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.support.ai import GEMINI, GPT, MESSAGES, expected_cost, start
from tests.support.ai_fakes import raw_request
from tests.support.redis_calls import script_calls
from tests.support.ai_requests import CLAUDE_PATH, GEMINI_PATH, OPENAI_CHAT, gemini, openai_chat

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_a_key_over_its_tokens_per_minute_gets_a_429(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    key = await stack.new_key(tpm_limit=20)
    client = stack.openai(key)
    first = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=15)
    assert first.usage.total_tokens >= 20
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert "key_tpm" in raised.value.message and int(raised.value.response.headers["Retry-After"]) >= 1
    assert len(await stack.charges()) == 1  # the refused call held and charged nothing


async def test_revoking_a_key_in_use_refuses_its_very_next_call(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)  # cached in Redis now
    key_id = await database.fetchval("SELECT id FROM api_keys WHERE prefix = $1", stack.key[:11])
    assert (await stack.gateway.delete(f"/api/v1/keys/{key_id}", headers=stack.user["headers"])).status == 200
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert len(await stack.charges()) == 1


async def test_a_key_whose_principal_is_remembered_is_refused_once_it_expires(
        gateway_factory, mock_target, database, clock):
    stack = await start(gateway_factory, mock_target, database)
    client = stack.openai(await stack.new_key(expires_in_hours=1))
    for _ in range(2):  # parsed on the first call, remembered for the second (decision 0028)
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    clock.advance(3601)  # Redis still holds the record: the gateway's own expiry check refuses
    with pytest.raises(openai.AuthenticationError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert "expired" in raised.value.message and len(await stack.charges()) == 2


async def test_with_redis_down_postgres_vouches_for_keys_and_calls_are_still_held_and_charged(
        gateway_factory, mock_target, database):
    import datetime as dt

    import ledger
    from gateway.accounts import users
    from gateway.accounts import api_keys
    from devkit.embedded import free_port
    from tests.support.accounts import deposit
    from tests.support.ai import Stack

    gateway = await gateway_factory(openai_base_url=f"{mock_target}/openai/v1", openai_api_keys="sk-mock-a",
                                    redis_url=f"redis://127.0.0.1:{free_port()}/0")
    user_id = await users.ensure_client(database, email="offline@example.com")
    await deposit(database, user_id, 10)
    now = dt.datetime.now(dt.timezone.utc)
    good = await api_keys.create(database, user_id=user_id, name="", allowed_models=[], ip_allowlist=[],
                                 rpm_limit=1, tpm_limit=0, now=now, expires_at=None)
    stack = Stack(gateway, mock_target, database, {"id": user_id}, good.key)
    client = stack.openai()
    for _ in range(2):  # the per-key limit of 1 pauses while Redis is away (decision 0011)
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=2)
    stranger = stack.openai("tg_" + "z" * 43)
    with pytest.raises(openai.AuthenticationError):
        await stranger.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=2)
    await stranger.close()
    await client.close()
    assert len(await stack.charges()) == 2 and await stack.open_holds() == 0
    assert (await ledger.balance(database, user_id)).available_micro < 10 * ledger.MICRO_PER_CREDIT


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer \xff\xfe"},
    {"Authorization": "Bearer tg_" + "\xff" * 43},
    {"Authorization": "\xff"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer \t "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"x-api-key": "\xc3\x28"},
    {"x-goog-api-key": "tg_\xe2\x82"},
])
async def test_an_odd_credential_header_is_a_provider_shaped_401(recorded, headers):
    stack, upstream = recorded
    for path, shape in ((OPENAI_CHAT, "openai"), (CLAUDE_PATH, "anthropic"), (GEMINI_PATH, "gemini")):
        answer = await raw_request(stack.gateway.server.port, "POST", path,
                                   {"Content-Type": "application/json", **headers}, openai_chat())
        assert answer.status == 401, (path, answer.body)
        error = answer.json()
        if shape == "anthropic":
            assert error["error"]["type"] == "authentication_error"
        elif shape == "gemini":
            assert error["error"]["status"] == "UNAUTHENTICATED"
        else:
            assert error["error"]["type"] == "authentication_error"
    answer = await raw_request(stack.gateway.server.port, "POST", f"{GEMINI_PATH}?key=%ff%fe",
                               {"Content-Type": "application/json"}, gemini())
    assert answer.status == 401 and answer.json()["error"]["status"] == "UNAUTHENTICATED"
    assert upstream.seen == []


async def test_gemini_v1beta_route_and_query_key_work(stack):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{stack.base}/gemini/v1beta/models/{GEMINI}:generateContent?key={stack.key}",
                                json={"contents": [{"parts": [{"text": "hi"}]}]}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
    assert (await stack.charges())[-1] == expected_cost(body["usageMetadata"]["promptTokenCount"], 0,
                                                        body["usageMetadata"]["candidatesTokenCount"])


async def test_a_key_over_its_rpm_gets_a_429_with_retry_after(stack):
    key = await stack.new_key(rpm_limit=2)
    client = stack.openai(key)
    for _ in range(2):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert int(raised.value.response.headers["Retry-After"]) >= 1


async def test_a_deactivated_user_s_key_is_refused_on_the_next_call_and_works_again_after(stack):
    from gateway.accounts import users as users_module

    await users_module.ensure_admin(stack.database, email="root@example.com", password="admin password 1")
    login = await stack.gateway.post("/api/v1/auth/login",
                                     json={"email": "root@example.com", "password": "admin password 1"})
    admin = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)  # the key is cached now
    url = f"/api/v1/admin/users/{stack.user['id']}"
    assert (await stack.gateway.patch(url, headers=admin, json={"is_active": False})).status == 200
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    assert (await stack.gateway.patch(url, headers=admin, json={"is_active": True})).status == 200
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()


async def test_the_plan_limit_spans_the_users_keys_and_a_refused_call_spends_no_key_allowance(
        gateway_factory, mock_target, database, redis_client, clock):
    """The plan's requests per minute are the user's, counted in the user's own Redis slot after the
    key's slot admitted the call (decision 0023): a call the plan refuses is taken back from its key."""
    from gateway.accounts import api_keys

    stack = await start(gateway_factory, mock_target, database,
                        plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    other = await stack.new_key(rpm_limit=5)
    for key in (stack.key, other):
        client = stack.openai(key)
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
        await client.close()
    client = stack.openai(other)
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert "plan" in raised.value.message
    assert len(await stack.charges()) == 2
    minute = int(clock.now_s() // 60)
    counted = await redis_client.get(f"tg:{{{api_keys.digest(other).hex()}}}:rpm:{minute}")
    assert counted == "1"  # its one admitted call; the refused one was taken back
    assert await redis_client.get(f"tg:{{u:{stack.user['id']}}}:airpm:{minute}") == "2"


async def test_an_ai_call_s_authentication_is_one_script_call_on_a_single_redis(
        gateway_factory, mock_target, database, redis_client):
    """The key's record and limits and the user's (the plan's) minute in one call: a single Redis has
    no slot rule (decision 0023)."""
    stack = await start(gateway_factory, mock_target, database,
                        plan_limits_per_min={"free": 50, "premium": 5, "enterprise": 0})
    key = await stack.new_key(rpm_limit=10, tpm_limit=0)  # no token reservation: authentication's calls only
    client = stack.openai(key)
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)  # cold: miss, fill
    before = await script_calls(redis_client)
    for _ in range(2):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert await script_calls(redis_client) - before == 2
    user_minutes = [key async for key in redis_client.scan_iter(f"tg:{{u:{stack.user['id']}}}:airpm:*")]
    assert len(user_minutes) == 1 and await redis_client.get(user_minutes[0]) == "3"
