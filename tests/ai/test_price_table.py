"""The model price table: the default price of an unlisted model."""

from __future__ import annotations

import math

import pytest

from tests.support.ai import MESSAGES, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_an_unlisted_model_is_charged_the_default_price_when_one_is_configured(gateway_factory, mock_target,
                                                                                     database):
    stack = await start(gateway_factory, mock_target, database, ai_default_price="3,4,1")
    before = await stack.balance()
    client = stack.openai()
    completion = await client.chat.completions.create(model="o4-mini", messages=MESSAGES,
                                                      max_completion_tokens=6)
    await client.close()
    u = completion.usage
    assert (await stack.charges())[-1] == math.ceil((u.prompt_tokens * 3_000_000 + u.completion_tokens * 4_000_000)
                                                    / 1_000_000)
    assert await stack.balance() < before
