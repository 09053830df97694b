"""Requests whose cost the body cannot bound are refused; upstream rate limits are not relayed raw."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from gateway.ai import routes
from tests.test_ai_routes import CLAUDE, GEMINI, GPT, MESSAGES, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


@pytest.mark.parametrize("extra", [
    {"previous_response_id": "resp_123"},
    {"conversation": "conv_123"},
    {"background": True},
    {"prompt": {"id": "pmpt_123"}},
    {"tools": [{"type": "web_search"}]},
    {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
])
async def test_openai_responses_with_unbounded_input_are_refused_and_charge_nothing(gateway_factory, mock_target,
                                                                                    database, extra):
    stack = await start(gateway_factory, mock_target, database)
    client = stack.openai()
    with pytest.raises(openai.BadRequestError) as raised:
        await client.responses.create(model=GPT, input="hi", max_output_tokens=20, **extra)
    await client.close()
    assert raised.value.code == "unsupported_parameter"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_server_side_tools_are_refused_for_anthropic_and_gemini(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    claude = stack.anthropic()
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES,
                                     tools=[{"type": "web_search_20250305", "name": "web_search"}])
    await claude.close()
    gemini = stack.gemini()
    from google.genai import types

    with pytest.raises(genai_errors.ClientError) as raised:
        await gemini.models.generate_content(model=GEMINI, contents="hi", config=types.GenerateContentConfig(
            tools=[types.Tool(google_search=types.GoogleSearch())]))
    await gemini.aclose()
    assert raised.value.code == 400
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


def test_function_tools_and_plain_prompts_are_fine():
    body = {"model": GPT, "messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert routes.openai("chat/completions", "POST", body).billed
    assert routes.openai("completions", "POST", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}).billed


def test_when_both_spellings_of_a_limit_are_sent_the_larger_is_held():
    body = {"model": GPT, "messages": MESSAGES, "max_tokens": 5, "max_completion_tokens": 50}
    assert routes.openai("chat/completions", "POST", body).output_bound == 50


async def test_an_upstream_429_is_ours_to_word_and_keeps_retry_after(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    await stack.control("faults", {"mode": "429", "count": 1, "retry_after_s": 7})
    client = stack.openai()
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
    await client.close()
    assert raised.value.code == "upstream_rate_limited" and raised.value.response.headers["Retry-After"] == "7"
    assert await stack.charges() == [] and await stack.open_holds() == 0
