"""Relaying an AI answer: cut streams and their drain, estimates when usage is missing, odd upstream streams."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from devkit.embedded import free_port
from gateway.accounts import api_keys, users
from gateway.app import create_app
from tests.support.accounts import deposit
from tests.support.ai import CLAUDE, GEMINI, GPT, MESSAGES, PRICE_MICRO, Stack, expected_cost, start
from tests.support.ai_fakes import CHAT_TEXT, RecordingUpstream, raw_request, read_then_leave, recording_upstream
from tests.support.gateways import make_settings

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


# What a call costs when the provider's own usage report never reaches the client (H2, L12).
# A client that leaves mid-stream pays what the same call read to its end would pay: the gateway reads
# the upstream on to its usage report. When it cannot (drain timeout, upstream broken, an upstream
# that reports no usage), the call is charged a conservative estimate: the prompt's bound (or the
# input the upstream reported), the text produced, and for reasoning requests the whole output bound.


PROMPT = "lorem ipsum dolor sit amet " * 800  # ~21 KB: input dominates the bill, as in the attack
CHAT_PATH, RESPONSES_PATH = "/openai/v1/chat/completions", "/openai/v1/responses"
CLAUDE_PATH = "/anthropic/v1/messages"
GEMINI_STREAM = f"/gemini/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"


def headers(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.key}", "x-goog-api-key": stack.key, "Content-Type": "application/json"}


def content_deltas(data: bytes) -> int:
    return data.count(b'"content":"') - data.count(b'"content":""')


# (name, path, body, the client has read enough to leave)
STREAMS = [
    ("openai chat, after the last content delta",
     CHAT_PATH, {"model": GPT, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
     lambda got: content_deltas(got) >= 20),
    ("openai reasoning chat, after the last content delta",
     CHAT_PATH, {"model": "o3-mini", "max_completion_tokens": 20, "stream": True,
                 "messages": [{"role": "user", "content": PROMPT}]},
     lambda got: content_deltas(got) >= 10),
    ("openai responses, after the first text",
     RESPONSES_PATH, {"model": GPT, "max_output_tokens": 20, "stream": True, "input": PROMPT},
     lambda got: b"event: response.output_text.delta" in got),
    ("anthropic, after the first text",
     CLAUDE_PATH,
     {"model": CLAUDE, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
     lambda got: b'"type":"text_delta"' in got),
    ("gemini, after the first text",
     GEMINI_STREAM, {"contents": [{"parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 20}},
     lambda got: b'"text": "' in got),
]


async def settled(stack: Stack, calls: int) -> dict:
    """Wait until `calls` usage rows exist and no hold is open; the latest row."""
    for _ in range(200):
        rows = await stack.database.fetch("SELECT * FROM ai_usage ORDER BY id")
        if len(rows) >= calls and await stack.open_holds() == 0:
            return dict(rows[-1])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no settlement: {await stack.database.fetch('SELECT * FROM ai_usage')}")


@pytest.mark.parametrize("name, path, body, enough", STREAMS, ids=[s[0] for s in STREAMS])
async def test_a_client_that_leaves_mid_stream_pays_what_the_whole_call_costs(gateway_factory, mock_target, database,
                                                                              name, path, body, enough):
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    await stack.control("latency", {"ms": 0, "chunk_ms": 150})
    data = orjson.dumps(body)
    whole = await raw_request(stack.gateway.server.port, "POST", path, headers(stack), data)
    assert whole.status == 200, whole.body
    full = await settled(stack, 1)
    assert full["usage_source"] == "upstream" and full["outcome"] == "ok"
    got = await read_then_leave(stack.gateway.server.port, path, headers(stack), data, enough)
    assert got.startswith(b"HTTP/1.1 200")
    cut = await settled(stack, 2)
    assert (cut["outcome"], cut["usage_source"]) == ("client_disconnected", "upstream")
    assert (await stack.charges())[-2:] == [full["charged_micro"], full["charged_micro"]]


CANNOT_DRAIN = [
    ("openai chat", CHAT_PATH,
     {"model": GPT, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}),
    ("openai reasoning chat", CHAT_PATH,
     {"model": "o3-mini", "max_completion_tokens": 20, "stream": True,
      "messages": [{"role": "user", "content": PROMPT}]}),
    ("gemini", GEMINI_STREAM,
     {"contents": [{"parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 20}}),
]


@pytest.mark.parametrize("name, path, body", CANNOT_DRAIN, ids=[c[0] for c in CANNOT_DRAIN])
async def test_a_cut_stream_that_cannot_be_drained_is_charged_its_input_and_a_conservative_output(
        gateway_factory, mock_target, database, name, path, body):
    stack = await start(gateway_factory, mock_target, database, credits=1000, ai_drain_timeout_s=0.2)
    await stack.control("latency", {"ms": 0, "chunk_ms": 700})  # the next frame comes after the drain gave up
    data = orjson.dumps(body)
    got = await read_then_leave(stack.gateway.server.port, path, headers(stack), data,
                                lambda got: content_deltas(got) >= 1 or b'"text": "' in got)
    assert got.startswith(b"HTTP/1.1 200")
    row = await settled(stack, 1)
    assert (row["outcome"], row["usage_source"]) == ("client_disconnected", "estimated")
    if path == GEMINI_STREAM:
        assert row["input_tokens"] + row["cached_input_tokens"] > 1000  # what Gemini already reported
    else:
        assert row["input_tokens"] == len(data)  # nothing reported yet: the prompt's bound
    if body.get("model") == "o3-mini":
        assert row["output_tokens"] == 20  # reasoning never streams: the whole output bound
    else:
        assert 1 <= row["output_tokens"] <= 20
    if body.get("model") != "o3-mini":  # priced by the test, so the cost can be recomputed
        assert row["charged_micro"] == row["cost_micro"] == expected_cost(
            row["input_tokens"], row["cached_input_tokens"], row["output_tokens"])
    assert (await stack.charges())[-1] == row["charged_micro"] > 0


# -- an upstream that never reports usage (L12) ------------------------------------------------


async def without_usage(gateway_factory, mock_target, database, aiohttp_raw_server) -> tuple[Stack, RecordingUpstream]:
    upstream, base = await recording_upstream(aiohttp_raw_server, with_usage=False)
    stack = await start(gateway_factory, mock_target, database, credits=1000, openai_base_url=f"{base}/openai/v1",
                        anthropic_base_url=f"{base}/anthropic", gemini_base_url=f"{base}/gemini")
    return stack, upstream


STREAMED_TEXT = RecordingUpstream().streamed_text()
# (path, body, output tokens to expect): text ÷ 4 rounded up, or the output bound when the model reasons.
NO_USAGE = [
    (CHAT_PATH, {"model": GPT, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
     math.ceil(len(CHAT_TEXT) / 4)),
    (CHAT_PATH, {"model": GPT, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
     math.ceil(len(STREAMED_TEXT) / 4)),
    (CLAUDE_PATH, {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
     math.ceil(len(CHAT_TEXT) / 4)),
    (f"/gemini/v1beta/models/{GEMINI}:generateContent",
     {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 50}},
     math.ceil(len(CHAT_TEXT) / 4)),
    (GEMINI_STREAM, {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 50}},
     math.ceil(len(STREAMED_TEXT) / 4)),
    ("/gemini/v1beta/models/gemini-2.5-flash:generateContent",
     {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 40}}, 40),
]


@pytest.mark.parametrize("path, body, output_tokens", NO_USAGE,
                         ids=[f"{p} stream={b.get('stream', 'stream' in p)}" for p, b, _ in NO_USAGE])
async def test_an_answer_without_usage_is_charged_its_input_bound_and_an_output_estimate(
        gateway_factory, mock_target, database, aiohttp_raw_server, path, body, output_tokens):
    stack, upstream = await without_usage(gateway_factory, mock_target, database, aiohttp_raw_server)
    data = orjson.dumps(body)
    answer = await raw_request(stack.gateway.server.port, "POST", path, headers(stack), data)
    assert answer.status == 200 and len(upstream.seen) == 1
    row = await settled(stack, 1)
    assert (row["usage_source"], row["input_tokens"], row["output_tokens"]) == ("estimated", len(data), output_tokens)
    assert (await stack.charges())[-1] == row["charged_micro"] == expected_cost(len(data), 0, output_tokens)


@pytest.fixture
async def served(servers, database, mock_target, clock):
    """The gateway as `tollgate serve` runs it: a handler carries on after its client has gone (aiohttp's
    test server cancels it instead, the case the tests above cover); yields its port, a key, the user."""
    await database.execute("UPDATE model_prices SET input_per_mtok_micro = $2, output_per_mtok_micro = $3, "
                           "cached_input_per_mtok_micro = $4 WHERE model = $1", GPT, *PRICE_MICRO)
    port = free_port()
    settings = make_settings(servers, mock_target, port, openai_base_url=f"{mock_target}/openai/v1",
                             openai_api_keys="sk-mock-a", ai_read_timeout_s=2.0)
    runner = web.AppRunner(create_app(settings, clock=clock), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    user_id = await users.ensure_client(database, email="served@example.com")
    await deposit(database, user_id, 1000)
    key = await api_keys.create(database, user_id=user_id, name="", allowed_models=[], ip_allowlist=[], rpm_limit=0,
                                tpm_limit=0, now=dt.datetime.now(dt.timezone.utc), expires_at=None)
    yield port, key.key, user_id
    await runner.cleanup()


async def test_on_the_production_server_a_client_that_leaves_pays_what_the_whole_call_costs(served, database,
                                                                                            mock_target):
    port, key, user_id = served
    async with aiohttp.ClientSession() as session:
        await session.post(f"{mock_target}/_mock/ai/latency", json={"ms": 0, "chunk_ms": 150})
    _, path, body, enough = STREAMS[0]  # the attack: every content delta read, then gone
    data = orjson.dumps(body)
    sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    assert (await raw_request(port, "POST", path, sent, data)).status == 200
    got = await read_then_leave(port, path, sent, data, enough)
    assert got.startswith(b"HTTP/1.1 200")
    for _ in range(200):
        rows = await database.fetch("SELECT charged_micro, outcome, usage_source FROM ai_usage ORDER BY id")
        if len(rows) == 2:
            break
        await asyncio.sleep(0.05)
    assert [tuple(row) for row in rows] == [(rows[0][0], "ok", "upstream"),
                                            (rows[0][0], "client_disconnected", "upstream")]


async def test_the_drain_stops_once_the_hold_is_spent(gateway_factory, mock_target, database, aiohttp_server):
    # An upstream that ignores max_tokens and never ends: once the text read costs the whole hold,
    # no usage report could lower the charge, so the drain stops long before its timeout.
    async def endless(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await answer.prepare(request)
        while True:
            await answer.write(b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"content": "word " * 80}, "finish_reason": None}]}) + b"\n\n")
            await asyncio.sleep(0.02)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, openai_base_url=str(upstream.make_url("/v1")),
                        ai_drain_timeout_s=30.0)
    body = orjson.dumps({"model": GPT, "max_tokens": 200, "stream": True,
                         "messages": [{"role": "user", "content": "Hi"}]})
    started = asyncio.get_running_loop().time()
    await read_then_leave(stack.gateway.server.port, CHAT_PATH, headers(stack), body,
                          lambda got: content_deltas(got) >= 1)
    row = await settled(stack, 1)
    assert asyncio.get_running_loop().time() - started < 10
    hold = await stack.database.fetchval("SELECT amount_micro FROM transfers WHERE phase = 'pending'")
    assert (row["usage_source"], row["charged_micro"]) == ("estimated", hold)



async def test_a_gemini_stream_with_two_candidates_is_relayed_as_it_comes_and_charged_its_final_report(
        gateway_factory, mock_target, database, aiohttp_server):
    # Review of H2: the Gemini meter called a stream finished at the first candidate's finishReason,
    # so every later event (the other candidate's text) was held back to the end of the stream as
    # if it were the final report, and a drain would have stopped there with a running usage.
    def chunk(candidates: list[dict], candidates_tokens: int) -> bytes:
        return b"data: " + orjson.dumps({"candidates": candidates, "usageMetadata": {
            "promptTokenCount": 1000, "candidatesTokenCount": candidates_tokens}}) + b"\r\n\r\n"

    async def two_candidates(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await answer.prepare(request)
        await answer.write(chunk([{"index": 0, "content": {"parts": [{"text": "short"}]}, "finishReason": "STOP"},
                                  {"index": 1, "content": {"parts": [{"text": "long "}]}}], 4))
        await asyncio.sleep(0.1)
        await answer.write(chunk([{"index": 1, "content": {"parts": [{"text": "more "}]}}], 100))
        await asyncio.sleep(1.5)  # the client must have seen "more" long before this ends (read timeout 2 s)
        await answer.write(chunk([{"index": 1, "content": {"parts": [{"text": "end"}]}, "finishReason": "STOP"}],
                                 320))
        return answer

    app = web.Application()
    app.router.add_post(f"/v1beta/models/{GEMINI}:streamGenerateContent", two_candidates)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, credits=1000,
                        gemini_base_url=str(upstream.make_url("")))
    body = orjson.dumps({"contents": [{"parts": [{"text": "Hi"}]}],
                         "generationConfig": {"maxOutputTokens": 400, "candidateCount": 2}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = await read_then_leave(stack.gateway.server.port, GEMINI_STREAM, headers(stack), body,
                                lambda got: b'"more ' in got)
    assert b'"more ' in got and loop.time() - started < 1.2
    row = await settled(stack, 1)
    assert (row["usage_source"], row["input_tokens"], row["output_tokens"]) == ("upstream", 1000, 320)


async def test_a_stream_request_answered_without_an_event_stream_is_a_502_and_charges_nothing(
        gateway_factory, mock_target, database, aiohttp_server):
    async def whole_json(request: web.Request) -> web.Response:  # an upstream that ignored "stream": true
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", whole_json)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, openai_base_url=str(upstream.make_url("/v1")))
    before = await stack.balance()
    client = stack.openai()
    with pytest.raises(openai.InternalServerError) as raised:
        stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5, stream=True)
        [chunk async for chunk in stream]
    await client.close()
    assert raised.value.status_code == 502
    assert await stack.balance() == before and await stack.open_holds() == 0


async def test_a_stream_with_an_event_over_a_mebibyte_is_relayed_and_charged(
        gateway_factory, mock_target, database, aiohttp_server):
    # The Responses API repeats the request's `instructions` in response.created and
    # response.completed (and inline images can be larger still), so one event can be as large as a
    # request the gateway accepts (20 MiB): such an event must not break the stream.
    response = {"id": "resp_1", "object": "response", "status": "completed", "model": GPT, "output": [],
                "instructions": "x" * 1_200_000}
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12}
    events = [{"type": "response.created", "response": {**response, "status": "in_progress"}},
              {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
               "delta": "hello", "logprobs": []},
              {"type": "response.completed", "response": {**response, "usage": usage}}]

    async def responses(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await answer.prepare(request)
        for number, event in enumerate(events):
            await answer.write(f"event: {event['type']}\ndata: ".encode()
                               + orjson.dumps({**event, "sequence_number": number}) + b"\n\n")
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, credits=10_000,
                        openai_base_url=str(upstream.make_url("/v1")))
    before = await stack.balance()
    client = stack.openai()
    stream = await client.responses.create(model=GPT, input="hi", max_output_tokens=16, stream=True)
    received = [event async for event in stream]
    await client.close()
    assert received[-1].type == "response.completed"
    p_in, p_out, _ = PRICE_MICRO
    assert before - await stack.balance() == math.ceil((10 * p_in + 2 * p_out) / 1_000_000)
    assert await stack.open_holds() == 0


async def test_a_stream_reset_midway_charges_the_prompt_bound_and_what_was_streamed(stack):
    # The provider bills the prompt of a call it broke off; it never said how much: the bound is
    # charged (decision 0011), with the text produced.
    before = await stack.balance()
    await stack.control("faults", {"mode": "reset_mid_stream", "count": 1})
    client = stack.openai()
    received = []
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=20, stream=True)
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    await client.close()
    row = None
    for _ in range(100):
        if (row := await stack.database.fetchrow("SELECT * FROM ai_usage")) is not None:
            break
        await asyncio.sleep(0.05)
    assert (row["outcome"], row["usage_source"]) == ("upstream_broken", "estimated")
    assert row["output_tokens"] == math.ceil(len("".join(received)) / 4) > 0
    assert row["input_tokens"] > len(MESSAGES[0]["content"])  # the request's bytes
    assert before - await stack.balance() == expected_cost(row["input_tokens"], 0, row["output_tokens"])
    assert await stack.open_holds() == 0


async def test_a_client_leaving_mid_stream_pays_for_what_was_produced(stack):
    before = await stack.balance()
    await stack.control("latency", {"ms": 0, "chunk_ms": 100})
    client = stack.anthropic()
    async with client.messages.stream(model=CLAUDE, max_tokens=20, messages=MESSAGES) as stream:
        async for _ in stream.text_stream:
            break  # leave after the first text
    await client.close()
    for _ in range(100):
        if await stack.open_holds() == 0:
            break
        await asyncio.sleep(0.05)
    assert await stack.open_holds() == 0
    charged = before - await stack.balance()
    # The input Anthropic reported at message_start is owed, plus the little output produced.
    assert 0 < charged < expected_cost(20, 0, 20) + expected_cost(50, 0, 0)
