"""The AI provider routes end to end: each official SDK, streamed or not, charged exactly; bodies read."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import orjson
import pytest
from google.genai import types as genai_types

from gateway.core import metrics
from tests.support.ai import CLAUDE, GEMINI, GPT, MESSAGES, Stack, assert_charged_exactly, expected_cost, start
from tests.support.ai_fakes import read_then_leave
from tests.support.ai_requests import CLAUDE_PATH, GEMINI_PATH, OPENAI_CHAT, post
from tests.support.bodies import dribble

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


# -- each SDK, streaming and not ---------------------------------------------------------------


async def test_openai_chat_is_charged_exactly_streamed_or_not(stack):
    before = await stack.balance()
    client = stack.openai()
    completion = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=12)
    usage = completion.usage
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    whole = (usage.prompt_tokens - cached, cached, usage.completion_tokens)
    assert completion.choices[0].message.content
    # The client did not ask for usage: tollgate asks for it upstream and hides that chunk.
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=12, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks) and all(chunk.usage is None for chunk in chunks)
    await client.close()
    await assert_charged_exactly(stack, before, whole, whole)
    sent = await stack.control("requests", method="GET")
    assert sent[-1]["body"]["stream_options"] == {"include_usage": True}


async def test_an_openai_stream_that_asks_for_usage_gets_it(stack):
    client = stack.openai()
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    await client.close()
    final = chunks[-1]
    assert final.choices == [] and final.usage.completion_tokens == 5
    assert (await stack.charges())[-1] == expected_cost(final.usage.prompt_tokens, 0, 5)


async def test_openai_responses_and_embeddings_are_charged(stack):
    before = await stack.balance()
    client = stack.openai()
    response = await client.responses.create(model=GPT, input="Hello there", max_output_tokens=30)
    streamed = await client.responses.create(model=GPT, input="Hello there", max_output_tokens=30, stream=True)
    events = [event async for event in streamed]
    embedding = await client.embeddings.create(model="text-embedding-3-small", input="embed me")
    await client.close()
    u = response.usage
    assert events[-1].type == "response.completed" and events[-1].response.usage.output_tokens == u.output_tokens
    await assert_charged_exactly(stack, before, (u.input_tokens, 0, u.output_tokens),
                                 (u.input_tokens, 0, u.output_tokens), (embedding.usage.prompt_tokens, 0, 0))


async def test_anthropic_messages_are_charged_exactly_streamed_or_not(stack):
    before = await stack.balance()
    client = stack.anthropic()
    message = await client.messages.create(model=CLAUDE, max_tokens=9, messages=MESSAGES)
    async with client.messages.stream(model=CLAUDE, max_tokens=9, messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    await client.close()
    assert text == message.content[0].text
    u = message.usage
    assert final.usage.output_tokens == u.output_tokens == 9
    await assert_charged_exactly(stack, before, (u.input_tokens, 0, u.output_tokens),
                                 (u.input_tokens, 0, u.output_tokens))


async def test_gemini_generate_and_stream_are_charged_exactly(stack):
    before = await stack.balance()
    client = stack.gemini()
    config = genai_types.GenerateContentConfig(max_output_tokens=7)
    whole = await client.models.generate_content(model=GEMINI, contents="Hello Gemini", config=config)
    pieces = [piece async for piece in await client.models.generate_content_stream(
        model=GEMINI, contents="Hello Gemini", config=config)]
    await client.aclose()
    u = whole.usage_metadata
    assert pieces[-1].usage_metadata.candidates_token_count == u.candidates_token_count == 7
    await assert_charged_exactly(stack, before, (u.prompt_token_count, 0, 7), (u.prompt_token_count, 0, 7))


# -- bad input ---------------------------------------------------------------------------------


async def post_raw(stack: Stack, path: str, data: bytes, headers: dict | None = None):
    async with aiohttp.ClientSession() as session:
        async with session.post(stack.base + path, data=data, headers={
                "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json", **(headers or {})}) as r:
            return r.status, await r.json()


async def test_malformed_json_is_a_provider_shaped_400_and_charges_nothing(stack):
    status, body = await post_raw(stack, "/openai/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = await post_raw(stack, "/anthropic/v1/messages", b"[1, 2]")
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body = await post_raw(stack, f"/gemini/v1/models/{GEMINI}:generateContent", b"nope")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


# -- M6: bodies that do not inflate -------------------------------------------------------------


@pytest.mark.parametrize("path, encoding, body", [
    (OPENAI_CHAT, "deflate", b"garbage"),
    (OPENAI_CHAT, "gzip", b"\x1f\x8b\x08\x00garbage"),
    (CLAUDE_PATH, "gzip", b"garbage"),
    (GEMINI_PATH, "deflate", b"\x78\x9c garbage"),
])
async def test_a_body_that_does_not_inflate_is_a_provider_shaped_400(recorded, path, encoding, body):
    stack, upstream = recorded
    answer = await post(stack, path, body, headers={"Content-Encoding": encoding})
    assert answer.status == 400, answer.body
    error = answer.json()
    if path == CLAUDE_PATH:
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    elif path == GEMINI_PATH:
        assert error["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert error["error"]["type"] == "invalid_request_error"
    assert upstream.seen == []
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_an_ai_route_answers_a_corrupt_body_in_the_providers_shape(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    response = await stack.gateway.post("/openai/v1/chat/completions", data=b"garbage", headers={
        "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json",
        "Content-Encoding": "deflate"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_content_encoding"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_an_ai_route_reads_a_gzip_body_and_charges_the_call(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    body = gzip.compress(orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "Hello"}]}))
    response = await stack.gateway.post("/openai/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 200, await response.text()
    assert (await response.json())["usage"]["completion_tokens"] > 0
    assert len(await stack.charges()) == 1


async def test_an_ai_body_sent_a_byte_at_a_time_is_a_408_in_the_providers_shape(gateway_factory, mock_target,
                                                                                database):
    stack = await start(gateway_factory, mock_target, database, request_body_timeout_s=0.5)
    body = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 200}]})
    answer = await dribble(stack.gateway.server.port, "/openai/v1/chat/completions",
                           {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}, body, 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "invalid_request_error"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


# One outcome word per AI call (issue 8): the request metric and the AI metric agree, because the
# AI stages record their outcome on the request's one Call.

CHAT = "/openai/v1/chat/completions"


def requests_counted(status: str, outcome: str) -> float:
    return metrics.REQUESTS.labels("ai_openai", "POST", status, outcome)._value.get()


def ai_calls_counted(outcome: str, source: str) -> float:
    return metrics.AI_CALLS.labels("openai", outcome, source)._value.get()


async def test_a_relayed_upstream_500_is_upstream_error_in_both_metrics(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    await stack.control("faults", {"mode": "500", "count": 1})
    before = requests_counted("500", "upstream_error"), ai_calls_counted("upstream_error", "none")
    response = await stack.gateway.post(CHAT, headers={"Authorization": f"Bearer {stack.key}"},
                                        json={"model": GPT, "max_tokens": 5, "messages": [{"role": "user",
                                                                                            "content": "hi"}]})
    assert response.status == 500
    after = requests_counted("500", "upstream_error"), ai_calls_counted("upstream_error", "none")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


async def test_a_client_leaving_mid_stream_is_client_disconnected_in_both_metrics(gateway_factory, mock_target,
                                                                                  database):
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    await stack.control("latency", {"ms": 0, "chunk_ms": 100})
    before = requests_counted("200", "client_disconnected"), ai_calls_counted("client_disconnected", "upstream")
    body = orjson.dumps({"model": GPT, "max_tokens": 20, "stream": True,
                         "messages": [{"role": "user", "content": "tell me a story"}]})
    got = await read_then_leave(stack.gateway.server.port, CHAT, {"Authorization": f"Bearer {stack.key}",
                                                                  "Content-Type": "application/json"}, body,
                                lambda seen: b'"content":"' in seen)
    assert got.startswith(b"HTTP/1.1 200")
    for _ in range(200):
        after = requests_counted("200", "client_disconnected"), ai_calls_counted("client_disconnected", "upstream")
        if after != before and await stack.open_holds() == 0:
            break
        await asyncio.sleep(0.05)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
