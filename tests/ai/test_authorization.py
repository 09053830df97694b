"""What a valid key may call: allowed models and addresses, known models; refusals in the provider's shape."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.support.ai import CLAUDE, GPT, MESSAGES, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_bad_keys_models_and_addresses_are_refused_in_the_providers_shapes(gateway_factory, mock_target,
                                                                                 database):
    stack = await start(gateway_factory, mock_target, database, ai_body_max_bytes=2000)
    before = await stack.balance()
    only_claude = await stack.new_key(allowed_models=[CLAUDE])
    elsewhere = await stack.new_key(ip_allowlist=["10.0.0.0/8"])
    revoked = await stack.new_key()
    revoked_id = (await stack.database.fetchval("SELECT id FROM api_keys WHERE prefix = $1", revoked[:11]))
    assert (await stack.gateway.delete(f"/api/v1/keys/{revoked_id}", headers=stack.user["headers"])).status == 200
    cases = [
        ("tg_" + "x" * 43, openai.AuthenticationError),
        (revoked, openai.AuthenticationError),
        (only_claude, openai.PermissionDeniedError),
        (elsewhere, openai.PermissionDeniedError),
    ]
    for key, exception in cases:
        client = stack.openai(key)
        with pytest.raises(exception):
            await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
        await client.close()
    client = stack.openai()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-unknown-9", messages=MESSAGES, max_tokens=5)
    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x" * 5000}],
                                             max_tokens=5)
    assert raised.value.status_code == 413
    await client.close()
    async with aiohttp.ClientSession() as session:  # no key at all
        async with session.post(f"{stack.base}/anthropic/v1/messages", json={
                "model": CLAUDE, "max_tokens": 5, "messages": MESSAGES}) as response:
            body = await response.json()
    assert response.status == 401 and body["error"]["type"] == "authentication_error"
    assert await stack.balance() == before
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0
