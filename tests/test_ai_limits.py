"""API key limits that need a call behind them: tokens per minute, and revocation of a used key."""

from __future__ import annotations

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
