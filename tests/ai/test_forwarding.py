"""The upstream request of an AI call: the exact body, timeouts, and upstream failures in the provider's shape."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from tests.support.ai import CLAUDE, GEMINI, GPT, MESSAGES, start
from tests.support.ai_requests import post

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_a_provider_read_timeout_overrides_the_global_one(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database, ai_read_timeout_s=30.0,
                        anthropic_read_timeout_s=0.5)
    before = await stack.balance()
    await stack.control("faults", {"mode": "timeout", "count": 1, "delay_ms": 20_000})
    client = stack.anthropic()
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    await client.close()
    assert raised.value.status_code == 504 and time.monotonic() - started < 10
    assert await stack.balance() == before and await stack.open_holds() == 0


def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"duplicate keys {names}"
    return dict(pairs)


def as_received(body: bytes) -> dict:
    """The body the upstream got, parsed so that any duplicate key anywhere fails the test."""
    return json.loads(body, object_pairs_hook=no_duplicates)


# -- M4: duplicate keys ------------------------------------------------------------------------


DUPLICATES = [
    ("/openai/v1/chat/completions", GPT,
     b'{"model":"gpt-4o","max_tokens":100000,"messages":[{"role":"user","content":"Hi"}],'
     b'"model":"gpt-4o-mini","max_tokens":10}',
     {"model": GPT, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/anthropic/v1/messages", CLAUDE,
     b'{"model":"claude-sonnet-4-5","max_tokens":64000,"messages":[{"role":"user","content":"Hi",'
     b'"content":"Hello"}],"model":"claude-haiku-4-5","max_tokens":5}',
     {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "Hello"}]}),
    (f"/gemini/v1beta/models/{GEMINI}:generateContent", None,
     b'{"contents":[{"parts":[{"text":"Hi"}]}],"generationConfig":{"maxOutputTokens":100000,'
     b'"thinkingConfig":{"thinkingBudget":24000,"thinkingBudget":0},"maxOutputTokens":5}}',
     {"contents": [{"parts": [{"text": "Hi"}]}],
      "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"thinkingBudget": 0}}}),
]


@pytest.mark.parametrize("path, allowed, body, forwarded", DUPLICATES, ids=[d[0] for d in DUPLICATES])
async def test_the_upstream_receives_exactly_the_body_that_was_authorised_and_held(recorded, path, allowed, body,
                                                                                 forwarded):
    stack, upstream = recorded
    key = await stack.new_key(allowed_models=[allowed]) if allowed else stack.key
    answer = await post(stack, path, body, key)
    assert answer.status == 200, answer.body
    assert [as_received(seen.body) for seen in upstream.seen] == [forwarded]


async def test_an_upstream_429_is_ours_to_word_and_keeps_retry_after(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    await stack.control("faults", {"mode": "429", "count": 1, "retry_after_s": 7})
    client = stack.openai()
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
    await client.close()
    assert raised.value.code == "upstream_rate_limited" and raised.value.response.headers["Retry-After"] == "7"
    assert await stack.charges() == [] and await stack.open_holds() == 0


# -- upstream failures -------------------------------------------------------------------------


async def test_an_upstream_500_is_relayed_and_charges_nothing(stack):
    before = await stack.balance()
    await stack.control("faults", {"mode": "500", "count": 1})
    client = stack.openai()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
    await client.close()
    assert await stack.balance() == before and await stack.charges() == [] and await stack.open_holds() == 0


async def test_an_upstream_timeout_is_a_504_in_the_provider_shape_and_charges_nothing(stack):
    before = await stack.balance()
    await stack.control("faults", {"mode": "timeout", "count": 1, "delay_ms": 10_000})
    client = stack.anthropic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    await client.close()
    assert raised.value.status_code == 504 and raised.value.body["type"] == "error"
    assert await stack.balance() == before and await stack.open_holds() == 0


async def test_an_upstream_that_is_down_is_a_502(gateway_factory, mock_target, database):
    from devkit.embedded import free_port

    stack = await start(gateway_factory, mock_target, database,
                        gemini_base_url=f"http://127.0.0.1:{free_port()}/gemini")
    before = await stack.balance()
    client = stack.gemini()
    with pytest.raises(genai_errors.ServerError) as raised:
        await client.models.generate_content(model=GEMINI, contents="hi")
    await client.aclose()
    assert raised.value.code == 502
    assert await stack.balance() == before and await stack.open_holds() == 0
