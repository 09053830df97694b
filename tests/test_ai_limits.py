"""API key limits that need a call behind them: tokens per minute, and revocation of a used key."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.test_ai_routes import GPT, MESSAGES, start

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


async def test_with_redis_down_postgres_vouches_for_keys_and_calls_are_still_held_and_charged(
        gateway_factory, mock_target, database):
    import datetime as dt

    import ledger
    from gateway.accounts import users
    from gateway.accounts import api_keys
    from devkit.embedded import free_port
    from tests.conftest import deposit
    from tests.test_ai_routes import Stack

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


async def test_calls_running_at_once_cannot_exceed_the_tokens_per_minute(gateway_factory, mock_target, database,
                                                                        redis_client):
    # Each call reserves its token bound (prompt bytes + max_tokens, here > 30) before it is
    # forwarded, so the first fills the window and the 19 others are refused while it runs (L8).
    stack = await start(gateway_factory, mock_target, database)
    key = await stack.new_key(tpm_limit=30)
    await stack.control("latency", {"ms": 1000, "chunk_ms": 1})
    client = stack.openai(key)

    async def one():
        try:
            await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=15)
            return 200
        except openai.RateLimitError as error:
            assert "key_tpm" in error.message
            return 429

    statuses = await asyncio.gather(*(one() for _ in range(20)))
    await client.close()
    assert sorted(statuses) == [200] + [429] * 19
    assert len(await stack.charges()) == 1 and await stack.open_holds() == 0
    # Settled, the reservation is replaced by the tokens really used.
    used = await database.fetchval("SELECT input_tokens + cached_input_tokens + output_tokens FROM ai_usage "
                                   "WHERE outcome = 'ok'")
    windows = [name for name in await redis_client.keys("tg:*:tpm:*")]
    assert sum([int(await redis_client.get(name)) for name in windows]) == used
