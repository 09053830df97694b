"""The upstream providers: their keys used round-robin, the client's key never sent upstream."""

from __future__ import annotations

import pytest

from tests.support.ai import GPT, MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_upstream_keys_are_used_round_robin_and_the_client_key_never_leaves(stack):
    await stack.control("requests", method="DELETE")
    client = stack.openai()
    for _ in range(2):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    sent = await stack.control("requests", method="GET")
    assert sorted(r["headers"]["authorization"] for r in sent) == ["Bearer sk-mock-a", "Bearer sk-mock-b"]
    assert all(stack.key not in str(r) for r in sent)
