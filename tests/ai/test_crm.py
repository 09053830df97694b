"""The billing-CRM API on the AI path: /api/v1/generate and /api/v1/balance."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from devkit.dev import SPEC_MODEL_PRICES
from gateway.ai.resources import AI
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
                assert answer["usage"]["total_tokens"] > 3 and answer["data"]
                assert answer["usage"]["tokens_used"] == (await stack.charges())[-1]  # micro-credits charged
            async with session.get(f"{stack.base}/api/v1/balance") as response:
                view = await response.json()
            assert view["balance"]["tokens_available"] == answer["usage"]["balance_remaining"]
        async with session.post(f"{stack.base}/api/v1/generate", json={"model": "llama-3", "messages": []}) as response:
            assert response.status == 400 and (await response.json())["error"] is True
    assert view["user_id"] == stack.user["id"] and view["balance"]["tokens_purchased"] == 100_000_000


@pytest.mark.parametrize("model", ["models/../gemini-2.0-flash", "../../files", f"{GEMINI}/../../x",
                                   "gemini-%2e%2e", "gemini-2.0-flash:streamGenerateContent"])
async def test_generate_refuses_a_model_name_that_is_not_one_path_segment(paths, model):
    stack, upstream = paths
    body = orjson.dumps({"model": model, "contents": [{"parts": [{"text": "hi"}]}]})
    answer = await send(stack, "POST", "/api/v1/generate", body)
    assert answer.status in (400, 404) and answer.json()["error"] is True
    assert upstream.seen == []


# -- the seed's contract (issue 11): its request bodies, its field names ---------------------------

SEED_REQUESTS = [{"model": "gpt-4", "prompt": "Write a haiku about tollgates.", "max_tokens": 50},
                 {"model": "gpt-3.5-turbo", "prompt": "Hello"},
                 {"model": "claude-3-opus-20240229", "prompt": "Hello", "max_tokens": 20},
                 {"model": "gemini-pro", "prompt": "Hello", "max_tokens": 20}]


async def test_the_seeds_client_sees_integer_tokens_that_add_up(stack):
    """1 token = 1 micro-credit: each answer's balance_remaining is the balance before less tokens_used."""
    await stack.database.execute(SPEC_MODEL_PRICES)  # the spec's example models, priced as the dev run does
    await stack.gateway.server.app[AI].prices.load()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.key}"}) as session:
        async with session.get(f"{stack.base}/api/v1/balance") as response:
            balance = (await response.json())["balance"]
        assert all(isinstance(balance[name], int)
                   for name in ("tokens_purchased", "tokens_used", "tokens_available"))
        previous = balance["tokens_available"]
        for body in SEED_REQUESTS:
            async with session.post(f"{stack.base}/api/v1/generate", json=body) as response:
                answer = await response.json()
            assert response.status == 200 and answer["error"] is False, answer
            usage = answer["usage"]
            assert isinstance(usage["tokens_used"], int) and isinstance(usage["balance_remaining"], int)
            assert usage["tokens_used"] > 0 and usage["balance_remaining"] == previous - usage["tokens_used"]
            assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0  # the provider's own counts
            previous = usage["balance_remaining"]
        async with session.get(f"{stack.base}/api/v1/balance") as response:
            after = (await response.json())["balance"]
    assert after["tokens_available"] == previous == await stack.balance()
    assert after["tokens_used"] - balance["tokens_used"] == sum(await stack.charges())
