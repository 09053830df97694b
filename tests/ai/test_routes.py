"""What an AI request is: exact path shapes, unbounded inputs refused, output bounds read from bodies."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import orjson
import pytest
from google.genai import errors as genai_errors

from gateway.ai import routes
from tests.support.ai import CLAUDE, GEMINI, GPT, MESSAGES, Stack, hold_for, start
from tests.support.ai_requests import send

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


# Requests whose cost the body cannot bound are refused.


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


# Output bounds read from bodies (review findings: holds that must bound every call, and SDK inputs
# that must be accepted; each test failed before its fix).


MEDIA_TOKENS = 100_000


async def post(stack: Stack, path: str, data: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(stack.base + path, data=data, headers={
                "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}) as response:
            return response.status, await response.json(content_type=None)


async def last_hold(stack: Stack) -> int:
    return await stack.database.fetchval(
        "SELECT amount_micro FROM transfers WHERE phase = 'pending' AND user_id = $1 ORDER BY id DESC LIMIT 1",
        stack.user["id"])


async def ceiling(stack: Stack, model: str) -> int:
    return await stack.database.fetchval("SELECT max_output_tokens FROM model_prices WHERE model = $1", model)


@pytest.fixture
async def rich(gateway_factory, mock_target, database) -> Stack:
    return await start(gateway_factory, mock_target, database, credits=1_000_000)


async def test_n_choices_multiply_the_model_ceiling_when_no_max_tokens_is_given(rich):
    body = b'{"model":"gpt-4o-mini","n":3,"messages":[{"role":"user","content":"hi"}]}'
    status, _ = await post(rich, "/openai/v1/chat/completions", body)
    assert status == 200
    assert await last_hold(rich) == hold_for(len(body), 3 * await ceiling(rich, GPT))


async def test_candidate_count_multiplies_the_model_ceiling_and_is_always_checked(rich):
    body = b'{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"candidateCount":2}}'
    status, _ = await post(rich, f"/gemini/v1beta/models/{GEMINI}:generateContent", body)
    assert status == 200
    assert await last_hold(rich) == hold_for(len(body), 2 * await ceiling(rich, GEMINI))
    bad = b'{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"candidateCount":100000}}'
    status, answer = await post(rich, f"/gemini/v1beta/models/{GEMINI}:generateContent", bad)
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"


async def test_legacy_completions_hold_every_prompt_of_a_batch(rich):
    body = b'{"model":"gpt-4o-mini","prompt":["a","b","c","d","e"],"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 5 * 10)
    # A single prompt given as token ids is one prompt; a batch of token-id lists is one per list.
    body = b'{"model":"gpt-4o-mini","prompt":[1,2,3],"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 10)
    body = b'{"model":"gpt-4o-mini","prompt":[[1,2],[3]],"n":2,"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 2 * 2 * 10)


async def test_gemini_dynamic_thinking_budget_is_accepted(rich):
    body = (b'{"contents":[{"parts":[{"text":"hi"}]}],'
            b'"generationConfig":{"maxOutputTokens":40,"thinkingConfig":{"thinkingBudget":-1}}}')
    status, answer = await post(rich, "/gemini/v1beta/models/gemini-2.5-flash:generateContent", body)
    assert status == 200, answer
    # maxOutputTokens caps the thoughts too; a dynamic budget adds nothing to the bound.
    assert await last_hold(rich) == hold_for(len(body), 40)


@pytest.mark.parametrize("path, body", [
    ("/openai/v1/chat/completions",
     b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":'
     b'[{"type":"\\u0069mage_url","\\u0069mage_url":{"url":"https://example.com/a.png"}}]}]}'),
    ("/anthropic/v1/messages",
     b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":'
     b'[{"type" : "image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}'),
])
async def test_a_referenced_image_is_held_however_its_json_is_spelled(rich, path, body):
    await post(rich, path, body)
    assert await last_hold(rich) == hold_for(len(body) + MEDIA_TOKENS, 5)  # one part, one reference


# An AI route forwards only the exact path it matched (attack C1): dot segments, encoded slashes or
# dots and backslashes are refused in the provider's shape, and the upstream sees nothing of them.
# Every request goes out on a raw socket, so no client normalises the path before the gateway sees it;
# the upstream is a low-level aiohttp server that records every request line whatever its path.


CHAT = orjson.dumps({"model": GPT, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
CLAUDE_BODY = orjson.dumps({"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
GEMINI_BODY = orjson.dumps({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 5}})


# (method, what the client sends, body, the one path the upstream must see)
ALLOWED = [
    ("GET", "/openai/v1/models", b"", "/openai/v1/models"),
    ("GET", "/openai/v1/models?limit=5", b"", "/openai/v1/models"),
    ("GET", f"/openai/v1/models/{GPT}", b"", f"/openai/v1/models/{GPT}"),
    ("GET", "/openai/v1/models/ft:gpt-4o-mini:acme::abc123", b"", "/openai/v1/models/ft:gpt-4o-mini:acme::abc123"),
    ("GET", "/openai/v1/models/ft%3Agpt-4o-mini%3Aacme", b"", "/openai/v1/models/ft:gpt-4o-mini:acme"),
    ("POST", "/openai/v1/chat/completions", CHAT, "/openai/v1/chat/completions"),
    ("POST", "/anthropic/v1/messages", CLAUDE_BODY, "/anthropic/v1/messages"),
    ("POST", "/anthropic/v1/messages/count_tokens", CLAUDE_BODY, "/anthropic/v1/messages/count_tokens"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}:generateContent", GEMINI_BODY,
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}%3AgenerateContent", GEMINI_BODY,
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", f"/gemini/v1/models/{GEMINI}:streamGenerateContent?alt=sse", GEMINI_BODY,
     f"/gemini/v1/models/{GEMINI}:streamGenerateContent?alt=sse"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}:countTokens", GEMINI_BODY, f"/gemini/v1beta/models/{GEMINI}:countTokens"),
    ("POST", "/api/v1/generate", orjson.dumps({"model": GEMINI, "contents": [{"parts": [{"text": "hi"}]}]}),
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", "/api/v1/generate", orjson.dumps({"model": f"models/{GEMINI}", "contents": [{"parts": [{"text": "hi"}]}]}),
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
]


@pytest.mark.parametrize("method, target, body, upstream_path", ALLOWED, ids=[f"{r[0]} {r[1]}" for r in ALLOWED])
async def test_a_valid_path_reaches_the_upstream_exactly(paths, method, target, body, upstream_path):
    stack, upstream = paths
    answer = await send(stack, method, target, body)
    assert answer.status == 200, answer.body
    assert [(seen.method, seen.raw_path) for seen in upstream.seen] == [(method, upstream_path)]


TRAVERSALS = ["..%2Ffiles", "%2e%2e/files", "%2E%2E%2Ffiles", "../files", "..%2F..%2F..%2F_mock/ai/requests",
              "%2e%2e/%2e%2e/%2e%2e/_mock/ai/requests", "../../../_mock/ai/requests", "..\\files", "%5c..%5cfiles",
              ".%2e/files", "%2e./files", "./gpt-4o-mini", "gpt-4o-mini/..", "gpt-4o-mini/%2e%2e", "..",
              "%252e%252e%252ffiles", "gpt-4o-mini%2F..%2F..%2Ffiles", "%2e", "."]
# (provider, method, target, body, status): each must be refused and nothing may reach the upstream.
REFUSED = [
    *[("openai", "GET", f"/openai/v1/models/{tail}", b"", 400) for tail in TRAVERSALS],
    ("openai", "GET", "/openai/v1/models%2Fgpt-4o-mini", b"", 400),
    ("openai", "GET", "/openai/v1/./models", b"", 400),
    ("openai", "GET", "/openai/v1/files", b"", 404),
    ("openai", "GET", "/openai/v1/models/gpt-4o-mini/versions", b"", 404),
    ("openai", "GET", "/openai/v1/models/%00", b"", 404),
    ("openai", "GET", "/openai/v1/%0A", b"", 404),  # found by the fuzz: fell to the JSON API's 404
    ("anthropic", "GET", "/anthropic/v1/%0A", b"", 404),
    ("openai", "POST", "/openai/v1/chat/completions/../../files", CHAT, 400),
    ("openai", "POST", "/openai/v1/chat%2Fcompletions", CHAT, 400),
    ("openai", "POST", "/openai/v1/chat/completions/%2e%2e", CHAT, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/../../v1/files", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/%2e%2e/batches", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1%2Fmessages", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/./messages", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/count_tokens/..", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1\\messages", CLAUDE_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta/models/{GEMINI}:generateContent/../../files", GEMINI_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta/files/../models/{GEMINI}:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta%2Fmodels%2F{GEMINI}:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", "/gemini/v1beta/models/%2e%2e:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", "/gemini/v1beta/models/..:generateContent", GEMINI_BODY, 404),
    ("gemini", "POST", "/gemini/v1beta/models/.hidden:generateContent", GEMINI_BODY, 404),
    ("gemini", "POST", f"/gemini/v1beta/models/..%2F..%2F{GEMINI}:generateContent", GEMINI_BODY, 400),
]


def provider_shaped(provider: str, answer) -> bool:
    body = answer.json()
    if provider == "anthropic":
        return body["type"] == "error" and body["error"]["type"] in ("invalid_request_error", "not_found_error")
    if provider == "gemini":
        return body["error"]["code"] == answer.status and body["error"]["status"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    return body["error"]["type"] == "invalid_request_error" and isinstance(body["error"]["code"], str)


@pytest.mark.parametrize("provider, method, target, body, status", REFUSED, ids=[f"{r[1]} {r[2]}" for r in REFUSED])
async def test_a_path_that_could_leave_the_route_is_refused_and_never_forwarded(paths, provider, method, target,
                                                                               body, status):
    stack, upstream = paths
    answer = await send(stack, method, target, body)
    assert (answer.status, upstream.seen) == (status, []), answer.body
    assert provider_shaped(provider, answer), answer.body


async def test_listing_models_and_counting_tokens_cost_nothing(stack):
    before = await stack.balance()
    openai_client, claude = stack.openai(), stack.anthropic()
    models = await openai_client.models.list()
    counted = await claude.messages.count_tokens(model=CLAUDE, messages=MESSAGES)
    gemini_client = stack.gemini()
    gemini_count = await gemini_client.models.count_tokens(model=GEMINI, contents="count me")
    await openai_client.close()
    await claude.close()
    await gemini_client.aclose()
    assert any(m.id == GPT for m in models.data) and counted.input_tokens and gemini_count.total_tokens
    assert await stack.balance() == before
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0
