"""The billing-CRM API on the AI path: /api/v1/generate and /api/v1/balance."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.support.ai import CLAUDE, GEMINI, GPT, MESSAGES
from tests.support.ai_requests import send

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_generate_picks_the_provider_from_the_model(stack):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.key}"}) as session:
        for body in ({"model": GPT, "messages": MESSAGES, "max_tokens": 3},
                     {"model": CLAUDE, "messages": MESSAGES, "max_tokens": 3},
                     {"model": GEMINI, "contents": [{"parts": [{"text": "hi"}]}],
                      "generationConfig": {"maxOutputTokens": 3}}):
            async with session.post(f"{stack.base}/api/v1/generate", json=body) as response:
                answer = await response.json()
                assert response.status == 200 and answer["error"] is False, answer
                assert answer["usage"]["tokens_used"] > 3 and answer["data"]
            async with session.get(f"{stack.base}/api/v1/balance") as response:
                view = await response.json()
            assert view["balance"]["tokens_available"] == answer["usage"]["balance_remaining"]
        async with session.post(f"{stack.base}/api/v1/generate", json={"model": "llama-3", "messages": []}) as response:
            assert response.status == 400 and (await response.json())["error"] is True
    assert view["user_id"] == stack.user["id"] and view["balance"]["tokens_purchased"] == "100"


@pytest.mark.parametrize("model", ["models/../gemini-2.0-flash", "../../files", f"{GEMINI}/../../x",
                                   "gemini-%2e%2e", "gemini-2.0-flash:streamGenerateContent"])
async def test_generate_refuses_a_model_name_that_is_not_one_path_segment(paths, model):
    stack, upstream = paths
    body = orjson.dumps({"model": model, "contents": [{"parts": [{"text": "hi"}]}]})
    answer = await send(stack, "POST", "/api/v1/generate", body)
    assert answer.status in (400, 404) and answer.json()["error"] is True
    assert upstream.seen == []
