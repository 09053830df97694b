"""Tests for the mock AI upstream: the official SDKs must parse it and see the documented usage numbers."""

from __future__ import annotations

import json
import math
import time

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from aiohttp.test_utils import unused_port
from google import genai
from google.genai import errors as genai_errors, types as genai_types

from devkit import mock_ai, mock_target as target_mock

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

SDK_TIMEOUT_S = 2.0
PROMPT = "Say something, please."  # 22 characters: 6 tokens, plus 3 for the message
SYSTEM = "Be brief."  # 9 characters: 3 tokens, plus 3
LONG = "x" * 4096  # 1024 tokens: cached by the OpenAI/Gemini rule, cacheable by Anthropic
REPLY = "The mock upstream answers with exactly one word per token."
MESSAGES = [{"role": "user", "content": PROMPT}]
CLAUDE = "claude-haiku-4-5"  # a model the SDK does not warn about


def expected_input(*messages: str) -> int:
    """The documented formula, written out independently of the module."""
    return max(1, sum(math.ceil(len(text) / 4) + 3 for text in messages))


def reply_text(tokens: int) -> str:
    words = REPLY.split(" ")
    return " ".join(words[number % len(words)] for number in range(tokens))


@pytest.fixture
async def base(aiohttp_server) -> str:
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    await aiohttp_server(target_mock.build_app(public_base_url=url), port=port)
    return url


@pytest.fixture
async def control(base: str):
    """Post to the mock's /_mock/ai controls; returns the JSON answer (or None)."""
    async with aiohttp.ClientSession(base) as session:
        async def call(method: str, path: str, body: dict | None = None):
            async with session.request(method, f"/_mock/ai/{path}", json=body) as response:
                assert response.status < 300, await response.text()
                return await response.json() if response.status != 204 else None
        yield call


@pytest.fixture
async def raw(base: str):
    async with aiohttp.ClientSession(base) as session:
        yield session


@pytest.fixture
async def oai(base: str):
    client = openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-mock-openai",
                                max_retries=0, timeout=SDK_TIMEOUT_S)
    yield client
    await client.close()


@pytest.fixture
async def claude(base: str):
    client = anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key="sk-mock-anthropic",
                                      max_retries=0, timeout=SDK_TIMEOUT_S)
    yield client
    await client.close()


def make_gemini(base: str, key: str = "mock-gemini") -> genai.Client:
    options = genai_types.HttpOptions(base_url=f"{base}/gemini", timeout=int(SDK_TIMEOUT_S * 1000),
                                      retry_options=genai_types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
async def gemini(base: str):
    client = make_gemini(base)
    yield client.aio
    await client.aio.aclose()


def anthropic_usage(usage) -> tuple:
    return (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens, usage.output_tokens)


# ---------------------------------------------------------------- usage formula (pure)


@pytest.mark.parametrize(("messages", "tokens"), [
    ([[""]], 3),
    ([["abcd"]], 4),
    ([["abcde"]], 5),
    ([["abcd", "e"], ["xy"]], 9),
    ([], 1),
])
def test_prompt_tokens_follow_the_formula(messages, tokens) -> None:
    """A prompt costs ceil(len/4) per text plus 3 per message, at least 1."""
    assert mock_ai.measure_input(messages) == tokens


@pytest.mark.parametrize(("limit", "reasoning", "budget", "planned"), [
    (None, False, None, (20, 0, False)),
    (20, False, None, (20, 0, False)),
    (7, False, None, (7, 0, True)),
    (None, True, None, (20, 10, False)),
    (5, True, None, (5, 2, True)),
    (None, True, 0, (20, 0, False)),
    (None, True, 4, (20, 4, False)),
])
def test_reply_tokens_follow_the_formula(limit, reasoning, budget, planned) -> None:
    """A reply is min(limit, 20) tokens; reasoning models think half of it, within any budget."""
    assert mock_ai.plan_output(limit, reasoning=reasoning, reasoning_max=budget) == planned


# ---------------------------------------------------------------- OpenAI


async def test_openai_chat_usage(oai) -> None:
    """A chat completion reports prompt, completion and total tokens by the formula, and 20 words."""
    completion = await oai.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": SYSTEM}, *MESSAGES])
    prompt = expected_input(SYSTEM, PROMPT)
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
            completion.choices[0].message.content, completion.choices[0].finish_reason) == (
        prompt, 20, prompt + 20, reply_text(20), "stop")


async def test_openai_chat_max_tokens_cuts_the_reply(oai) -> None:
    """max_completion_tokens below 20 gives that many tokens and finish_reason length."""
    completion = await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=5)
    assert (completion.usage.completion_tokens, completion.choices[0].message.content,
            completion.choices[0].finish_reason) == (5, reply_text(5), "length")


async def test_openai_chat_stream_with_usage(oai) -> None:
    """With include_usage the last chunk has no choices and the usage; the text equals the non-stream one."""
    stream = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=12,
                                               stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    last = chunks[-1]
    assert (text, last.choices, last.usage.prompt_tokens, last.usage.completion_tokens,
            [chunk.usage for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)) == (
        reply_text(12), [], expected_input(PROMPT), 12, True)


async def test_openai_chat_stream_without_usage(oai) -> None:
    """Without include_usage no chunk carries usage and every chunk has a choice."""
    stream = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None and len(chunk.choices) == 1 for chunk in chunks)


@pytest.mark.parametrize(("include_usage", "usage_nulls"), [(True, True), (False, False)])
async def test_openai_chat_stream_wire_format(raw, include_usage, usage_nulls) -> None:
    """On the wire: `"usage":null` on every content chunk only with include_usage, then data: [DONE]."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": include_usage}}
    async with raw.post("/openai/v1/chat/completions", json=body,
                        headers={"Authorization": "Bearer sk-mock-1"}) as response:
        frames = (await response.text()).split("\n\n")
    content = [frame for frame in frames if frame.startswith("data: {") and '"choices":[{' in frame]
    assert (all('"usage":null' in frame for frame in content) == usage_nulls,
            any('"usage":null' in frame for frame in content) == usage_nulls,
            frames[-2:], response.headers["Content-Type"]) == (
        True, True, ["data: [DONE]", ""], "text/event-stream; charset=utf-8")


async def test_openai_stream_options_need_stream(oai) -> None:
    """stream_options without stream is refused with 400, as the real API does."""
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                          stream_options={"include_usage": True})


async def test_openai_reasoning_tokens(oai) -> None:
    """o3-mini spends half of its completion tokens reasoning, counted inside completion_tokens."""
    completion = await oai.chat.completions.create(model="o3-mini", messages=MESSAGES)
    usage = completion.usage
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens,
            completion.choices[0].message.content) == (20, 10, reply_text(10))


async def test_openai_cached_tokens(oai) -> None:
    """A message of 4096+ characters is reported as cached prompt tokens (a part of prompt_tokens)."""
    completion = await oai.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": LONG}, *MESSAGES])
    usage = completion.usage
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (
        expected_input(LONG, PROMPT), 1024)


async def test_openai_legacy_completions_stream_and_not(oai) -> None:
    """/completions answers the same text and usage streamed (with include_usage) or not."""
    whole = await oai.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=8)
    stream = await oai.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=8,
                                          stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert (whole.choices[0].text, whole.usage) == (text, chunks[-1].usage)


async def test_openai_responses_usage(oai) -> None:
    """The Responses API reports input/output/total tokens with their details."""
    response = await oai.responses.create(model="gpt-4o-mini", input=PROMPT, instructions=SYSTEM)
    usage = response.usage
    prompt = expected_input(SYSTEM, PROMPT)
    assert (response.output_text, response.status, usage.input_tokens, usage.output_tokens, usage.total_tokens,
            usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (
        reply_text(20), "completed", prompt, 20, prompt + 20, 0, 0)


async def test_openai_responses_stream(oai) -> None:
    """A streamed response numbers its events and ends with response.completed and the usage."""
    stream = await oai.responses.create(model="o3-mini", input=[{"role": "user", "content": PROMPT}], stream=True)
    events = [event async for event in stream]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    usage = events[-1].response.usage
    assert (events[-1].type, [event.sequence_number for event in events] == list(range(len(events))),
            deltas, usage.input_tokens, usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (
        "response.completed", True, reply_text(10), expected_input(PROMPT), 20, 10)


async def test_openai_responses_stream_event_order(oai) -> None:
    """The text events come in the real API's order, between item added and response.completed."""
    stream = await oai.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True, max_output_tokens=20)
    types = [event.type async for event in stream]
    expected = ["response.created", "response.in_progress", "response.output_item.added",
                "response.content_part.added", *["response.output_text.delta"] * 20,
                "response.output_text.done", "response.content_part.done", "response.output_item.done",
                "response.completed"]
    assert types == expected


async def test_openai_responses_max_output_tokens_is_incomplete(oai) -> None:
    """A limit under 20 ends the stream with response.incomplete, usage included."""
    stream = await oai.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True, max_output_tokens=16)
    events = [event async for event in stream]
    final = events[-1]
    assert (final.type, final.response.status, final.response.incomplete_details.reason,
            final.response.usage.output_tokens) == ("response.incomplete", "incomplete", "max_output_tokens", 16)


@pytest.mark.parametrize("encoding", [None, "float"])
async def test_openai_embeddings(oai, encoding) -> None:
    """Embeddings come back as 1536 floats (base64 by the SDK's default, or plain floats) with usage."""
    extra = {} if encoding is None else {"encoding_format": encoding}
    result = await oai.embeddings.create(model="text-embedding-3-small", input=[PROMPT, SYSTEM], **extra)
    norm = sum(value * value for value in result.data[0].embedding)
    assert ([len(item.embedding) for item in result.data], round(norm, 3), result.usage.prompt_tokens) == (
        [1536, 1536], 1.0, math.ceil(len(PROMPT) / 4) + math.ceil(len(SYSTEM) / 4))


async def test_openai_models(oai) -> None:
    """models.list names the fixed list and models.retrieve finds one of them."""
    names = [model.id async for model in oai.models.list()]
    model = await oai.models.retrieve("o3-mini")
    assert ({"gpt-4o-mini", "gpt-4o", "o3-mini", "text-embedding-3-small"} <= set(names), model.id) == (
        True, "o3-mini")


async def test_openai_reasoning_model_refuses_max_tokens(oai) -> None:
    """o-series models want max_completion_tokens, as the real API insists."""
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="o3-mini", messages=MESSAGES, max_tokens=5)


# ---------------------------------------------------------------- Anthropic


async def test_anthropic_message_usage(claude) -> None:
    """messages.create reports input tokens by the formula and min(max_tokens, 20) output tokens."""
    message = await claude.messages.create(model=CLAUDE, max_tokens=100, system=SYSTEM, messages=MESSAGES)
    assert (anthropic_usage(message.usage), message.content[0].text, message.stop_reason) == (
        (expected_input(SYSTEM, PROMPT), 0, 0, 20), reply_text(20), "end_turn")


async def test_anthropic_max_tokens_stop_reason(claude) -> None:
    """A max_tokens below 20 stops with stop_reason max_tokens."""
    message = await claude.messages.create(model=CLAUDE, max_tokens=3, messages=MESSAGES)
    assert (message.usage.output_tokens, message.stop_reason) == (3, "max_tokens")


async def test_anthropic_stream_final_message(claude) -> None:
    """messages.stream accumulates the same text and usage as the non-streamed call."""
    whole = await claude.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES)
    async with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    assert (final.content[0].text, anthropic_usage(final.usage)) == (
        whole.content[0].text, anthropic_usage(whole.usage))


async def test_anthropic_stream_events(claude) -> None:
    """create(stream=True): message_start has 1 output token, message_delta the cumulative 20."""
    stream = await claude.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)
    events = [event async for event in stream]
    start, delta = events[0], events[-2]
    assert ([events[0].type, events[1].type, events[-3].type, events[-2].type, events[-1].type],
            start.message.usage.output_tokens, start.message.usage.input_tokens,
            delta.usage.output_tokens, delta.usage.input_tokens) == (
        ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"],
        1, expected_input(PROMPT), 20, expected_input(PROMPT))


async def test_anthropic_stream_wire_format(raw) -> None:
    """Each frame has an event line, and a ping comes after the first content block starts."""
    body = {"model": CLAUDE, "max_tokens": 5, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": "sk-mock-1", "anthropic-version": "2023-06-01"}
    async with raw.post("/anthropic/v1/messages", json=body, headers=headers) as response:
        frames = [frame for frame in (await response.text()).split("\n\n") if frame]
    names = [frame.split("\n")[0] for frame in frames]
    assert names == ["event: message_start", "event: content_block_start", "event: ping",
                     *["event: content_block_delta"] * 5, "event: content_block_stop", "event: message_delta",
                     "event: message_stop"]


async def test_anthropic_count_tokens(claude) -> None:
    """count_tokens answers the same input tokens a call would use."""
    count = await claude.messages.count_tokens(model=CLAUDE, system=SYSTEM, messages=MESSAGES)
    assert count.input_tokens == expected_input(SYSTEM, PROMPT)


async def test_anthropic_prompt_cache_writes_then_reads(claude) -> None:
    """A cache_control prefix of 1024+ tokens is written on the first call and read on the second."""
    system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    first = await claude.messages.create(model=CLAUDE, max_tokens=100, system=system, messages=MESSAGES)
    second = await claude.messages.create(model=CLAUDE, max_tokens=100, system=system, messages=MESSAGES)
    rest = expected_input(LONG, PROMPT) - 1024
    assert (anthropic_usage(first.usage), anthropic_usage(second.usage)) == ((rest, 1024, 0, 20),
                                                                             (rest, 0, 1024, 20))


async def test_anthropic_accepts_x_api_key_and_requires_version(raw) -> None:
    """x-api-key works like the SDK's Bearer form; a missing anthropic-version is a 400."""
    body = {"model": CLAUDE, "max_tokens": 5, "messages": MESSAGES}
    async with raw.post("/anthropic/v1/messages", json=body,
                        headers={"x-api-key": "sk-mock-1", "anthropic-version": "2023-06-01"}) as ok:
        ok_status = ok.status
    async with raw.post("/anthropic/v1/messages", json=body, headers={"x-api-key": "sk-mock-1"}) as missing:
        error = await missing.json()
    assert (ok_status, missing.status, error["type"], error["error"]["type"]) == (
        200, 400, "error", "invalid_request_error")


# ---------------------------------------------------------------- Gemini


async def test_gemini_generate_usage(gemini) -> None:
    """generate_content reports prompt, candidates and total tokens by the formula."""
    response = await gemini.models.generate_content(
        model="gemini-2.0-flash", contents=PROMPT,
        config=genai_types.GenerateContentConfig(system_instruction=SYSTEM))
    usage = response.usage_metadata
    prompt = expected_input(SYSTEM, PROMPT)
    assert (response.text, usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count,
            usage.thoughts_token_count, response.candidates[0].finish_reason) == (
        reply_text(20), prompt, 20, prompt + 20, None, genai_types.FinishReason.STOP)


async def test_gemini_stream(gemini) -> None:
    """The stream's text equals the whole reply; only the last event has the candidates count."""
    stream = await gemini.models.generate_content_stream(
        model="gemini-2.0-flash", contents=PROMPT,
        config=genai_types.GenerateContentConfig(max_output_tokens=9))
    chunks = [chunk async for chunk in stream]
    usages = [chunk.usage_metadata for chunk in chunks]
    assert ("".join(chunk.text for chunk in chunks), len(chunks) > 1,
            [usage.candidates_token_count for usage in usages[:-1]] == [None] * (len(chunks) - 1),
            [usage.prompt_token_count for usage in usages] == [expected_input(PROMPT)] * len(chunks),
            usages[-1].candidates_token_count, usages[-1].total_token_count,
            chunks[-1].candidates[0].finish_reason) == (
        reply_text(9), True, True, True, 9, expected_input(PROMPT) + 9, genai_types.FinishReason.MAX_TOKENS)


async def test_gemini_thinking_tokens(gemini) -> None:
    """gemini-2.5-flash thinks half of its output: thoughtsTokenCount is counted in the total once."""
    response = await gemini.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    usage = response.usage_metadata
    assert (usage.candidates_token_count, usage.thoughts_token_count, usage.total_token_count, response.text) == (
        10, 10, expected_input(PROMPT) + 20, reply_text(10))


async def test_gemini_thinking_budget_zero(gemini) -> None:
    """A thinking budget of 0 turns thinking off."""
    response = await gemini.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT,
        config=genai_types.GenerateContentConfig(thinking_config=genai_types.ThinkingConfig(thinking_budget=0)))
    assert (response.usage_metadata.thoughts_token_count, response.usage_metadata.candidates_token_count) == (None, 20)


async def test_gemini_cached_tokens(gemini) -> None:
    """A text of 4096+ characters is reported as cachedContentTokenCount, a part of the prompt count."""
    response = await gemini.models.generate_content(model="gemini-2.0-flash", contents=[LONG, PROMPT])
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (expected_input(LONG + PROMPT), 1024)


async def test_gemini_count_tokens(gemini) -> None:
    """count_tokens answers the prompt tokens a call would use."""
    count = await gemini.models.count_tokens(model="gemini-2.5-pro", contents=PROMPT)
    assert count.total_tokens == expected_input(PROMPT)


async def test_gemini_v1beta_with_query_key_and_crlf_frames(raw) -> None:
    """/v1beta with ?key= streams SSE events ended by CRLF CRLF, each a whole response."""
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    async with raw.post("/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=mock-1",
                        json=body) as response:
        text = await response.text()
    events = [json.loads(frame.removeprefix("data: ")) for frame in text.split("\r\n\r\n") if frame]
    assert (response.status, text.endswith("\r\n\r\n"), events[-1]["usageMetadata"]["totalTokenCount"]) == (
        200, True, expected_input(PROMPT) + 20)


async def test_gemini_stream_without_sse_is_a_json_array(raw) -> None:
    """Without alt=sse the same responses come as one JSON array."""
    body = {"contents": [{"parts": [{"text": PROMPT}]}]}
    async with raw.post("/gemini/v1/models/gemini-2.0-flash:streamGenerateContent",
                        json=body, headers={"x-goog-api-key": "mock-1"}) as response:
        chunks = await response.json()
    assert "".join(chunk["candidates"][0]["content"]["parts"][0]["text"] for chunk in chunks) == reply_text(20)


# ---------------------------------------------------------------- errors


async def test_unknown_model_is_404_everywhere(oai, claude, gemini) -> None:
    """An unknown model raises each SDK's not-found error."""
    outcomes = []
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    outcomes.append(caught.value.body["code"])
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.messages.create(model="claude-nope", max_tokens=5, messages=MESSAGES)
    outcomes.append(caught.value.body["error"]["type"])
    with pytest.raises(genai_errors.ClientError) as caught:
        await gemini.models.generate_content(model="gemini-nope", contents=PROMPT)
    outcomes.append((caught.value.code, caught.value.status))
    assert outcomes == ["model_not_found", "not_found_error", (404, "NOT_FOUND")]


async def test_wrong_key_is_401_everywhere(base) -> None:
    """A key outside the accepted set raises each SDK's authentication error."""
    outcomes = []
    async with openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-real", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        outcomes.append(caught.value.body["code"])
    async with anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key="bad", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
        outcomes.append(caught.value.body["error"]["type"])
    client = make_gemini(base, key="AIza-real")
    with pytest.raises(genai_errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
    await client.aio.aclose()
    outcomes.append((caught.value.code, caught.value.status))
    assert outcomes == ["invalid_api_key", "authentication_error", (401, "UNAUTHENTICATED")]


@pytest.mark.parametrize(("path", "headers", "shape"), [
    ("/openai/v1/chat/completions", {"Authorization": "Bearer sk-mock-1"}, ("error", "type")),
    ("/anthropic/v1/messages", {"Authorization": "Bearer sk-mock-1", "anthropic-version": "2023-06-01"},
     ("error", "type")),
    ("/gemini/v1beta/models/gemini-2.0-flash:generateContent", {"x-goog-api-key": "mock-1"}, ("error", "status")),
])
async def test_malformed_json_is_400(raw, path, headers, shape) -> None:
    """A body that is not JSON gets a 400 in the provider's error shape."""
    async with raw.post(path, data=b'{"model": ', headers={**headers, "Content-Type": "application/json"}) as reply:
        body = await reply.json()
    assert (reply.status, shape[1] in body[shape[0]]) == (400, True)


async def test_unknown_path_under_a_provider_is_its_404(oai) -> None:
    """Paths the mock does not serve under /openai answer the provider's 404, not the HTML target's."""
    with pytest.raises(openai.NotFoundError):
        await oai.post("/fine_tuning/jobs", cast_to=object, body={})


# ---------------------------------------------------------------- faults and latency


async def test_fault_500(control, oai, claude, gemini) -> None:
    """The 500 fault raises each SDK's server error."""
    await control("POST", "faults", {"mode": "500", "count": 3})
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(anthropic.InternalServerError):
        await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    with pytest.raises(genai_errors.ServerError):
        await gemini.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)


async def test_fault_429_has_retry_after(control, oai, claude, gemini) -> None:
    """The 429 fault raises each SDK's rate-limit error, with a Retry-After header."""
    await control("POST", "faults", {"mode": "429", "count": 3, "retry_after_s": 7})
    with pytest.raises(openai.RateLimitError) as openai_error:
        await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as anthropic_error:
        await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        await gemini.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
    assert (openai_error.value.response.headers["retry-after"],
            anthropic_error.value.response.headers["retry-after"], gemini_error.value.code) == ("7", "7", 429)


async def test_fault_timeout(base, control) -> None:
    """The timeout fault outlasts the client's timeout: each SDK raises its timeout error."""
    await control("POST", "faults", {"mode": "timeout", "count": 3})
    async with openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-mock-1", max_retries=0,
                                  timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    async with anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key="sk-mock-1", max_retries=0,
                                        timeout=0.3) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    options = genai_types.HttpOptions(base_url=f"{base}/gemini", timeout=300,
                                      retry_options=genai_types.HttpRetryOptions(attempts=1))
    client = genai.Client(api_key="mock-1", http_options=options)
    with pytest.raises(TimeoutError):  # google-genai lets the transport's timeout through unwrapped
        await client.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
    await client.aio.aclose()


async def test_fault_reset(control, oai, claude, gemini) -> None:
    """The reset fault drops the connection before any answer: a connection error in each SDK."""
    await control("POST", "faults", {"mode": "reset", "count": 3})
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(anthropic.APIConnectionError):
        await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    with pytest.raises(aiohttp.ClientError):  # google-genai's async client runs on aiohttp, unwrapped
        await gemini.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)


async def test_fault_reset_mid_stream_openai(control, oai) -> None:
    """reset_mid_stream delivers some chunks, then the SDK raises a connection error."""
    await control("POST", "faults", {"mode": "reset_mid_stream"})
    received = []
    stream = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                               stream_options={"include_usage": True})
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert 0 < len(received) < 20 and all(chunk.usage is None for chunk in received)


async def test_fault_reset_mid_stream_anthropic(control, claude) -> None:
    """reset_mid_stream on Anthropic: message_start arrives, then the transport error (unwrapped by the SDK)."""
    await control("POST", "faults", {"mode": "reset_mid_stream"})
    received = []
    stream = await claude.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async for event in stream:
            received.append(event.type)
    assert received[0] == "message_start" and "message_stop" not in received


async def test_fault_reset_mid_stream_gemini(control, gemini) -> None:
    """reset_mid_stream on Gemini: some responses arrive, none with the final usage."""
    await control("POST", "faults", {"mode": "reset_mid_stream"})
    received = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in await gemini.models.generate_content_stream(model="gemini-2.0-flash", contents=PROMPT):
            received.append(chunk.usage_metadata.candidates_token_count)
    assert received and set(received) == {None}


async def test_fault_reset_mid_body(control, oai) -> None:
    """reset_mid_stream on a plain JSON answer sends half the body and cuts: a connection error."""
    await control("POST", "faults", {"mode": "reset_mid_stream"})
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def test_fault_slow_stream(control, claude) -> None:
    """slow_stream spaces the frames by delay_ms, and the stream still completes."""
    await control("POST", "faults", {"mode": "slow_stream", "delay_ms": 60})
    started = time.monotonic()
    async with claude.messages.stream(model=CLAUDE, max_tokens=3, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    elapsed_s = time.monotonic() - started
    assert (final.usage.output_tokens, elapsed_s >= 0.06 * 8) == (3, True)  # 9 frames, 8 gaps


async def test_fault_count_and_provider_filter(control, oai, claude) -> None:
    """A fault for one provider leaves the others alone, and ends after `count` requests."""
    await control("POST", "faults", {"mode": "500", "count": 2, "provider": "openai"})
    await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (completion.usage.completion_tokens, await control("GET", "faults")) == (
        20, {"mode": "none", "count": 0, "provider": None})


async def test_latency_delays_every_answer(control, oai) -> None:
    """POST /_mock/ai/latency sets a wait before each answer."""
    await control("POST", "latency", {"ms": 250, "chunk_ms": 0})
    started = time.monotonic()
    await oai.models.list()
    assert time.monotonic() - started >= 0.25


async def test_fault_control_rejects_unknown_modes(raw) -> None:
    """The controls answer 400 to a mode or provider they do not know."""
    async with raw.post("/_mock/ai/faults", json={"mode": "explode"}) as mode_reply:
        pass
    async with raw.post("/_mock/ai/faults", json={"mode": "500", "provider": "mistral"}) as provider_reply:
        pass
    assert (mode_reply.status, provider_reply.status) == (400, 400)


# ---------------------------------------------------------------- request log and keys


async def test_request_log_shows_what_was_sent(control, claude) -> None:
    """GET /_mock/ai/requests shows the path, every header (lower-cased) and the parsed body."""
    await control("DELETE", "requests")
    await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    [logged] = await control("GET", "requests")
    assert (logged["provider"], logged["method"], logged["path"], logged["headers"]["authorization"],
            "anthropic-version" in logged["headers"], logged["body"]["messages"]) == (
        "anthropic", "POST", "/anthropic/v1/messages", "Bearer sk-mock-anthropic", True, MESSAGES)


async def test_request_log_is_bounded_and_clearable(control, oai) -> None:
    """The log keeps the last 100 requests; DELETE empties it."""
    # One after another: 105 connections opened at once outran the SDK's 2 s connect timeout on a
    # loaded machine (a CI run failed so), and the log's bound is what is tested here.
    for _ in range(105):
        await oai.models.list()
    full = len(await control("GET", "requests"))
    await control("DELETE", "requests")
    assert (full, await control("GET", "requests")) == (100, [])


async def test_accepted_keys_can_be_set(base, control) -> None:
    """POST /_mock/ai/keys replaces the prefix rule with an exact set of keys."""
    await control("POST", "keys", {"keys": ["upstream-key-1"]})
    async with openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="upstream-key-1", max_retries=0) as ok:
        await ok.models.list()
    async with openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="sk-mock-1", max_retries=0) as refused:
        with pytest.raises(openai.AuthenticationError):
            await refused.models.list()


async def test_reset_restores_defaults(control) -> None:
    """POST /_mock/ai/reset clears faults, latency and the log."""
    await control("POST", "faults", {"mode": "429", "count": 5})
    await control("POST", "latency", {"ms": 100})
    await control("POST", "reset")
    assert (await control("GET", "faults"), await control("POST", "latency", {}),
            await control("GET", "requests")) == (
        {"mode": "none", "count": 0, "provider": None}, {"ms": 0, "chunk_ms": mock_ai.CHUNK_DELAY_MS_DEFAULT}, [])
