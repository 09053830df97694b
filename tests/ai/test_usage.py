"""Table and property tests for gateway.ai.usage, and usage read from real SDK calls (cache and thinking tokens)."""

from __future__ import annotations

import copy

import orjson
import pytest
from google.genai import types as genai_types
from hypothesis import given, settings, strategies as st

from gateway.ai.pricing import Price, cost_micro
from gateway.ai.sse import SseDecoder, SseEvent
from gateway.ai.usage import (
    AnthropicMeter, GeminiMeter, OpenAIChatMeter, OpenAIResponsesMeter, Usage, answer_text_chars, from_anthropic,
    from_gemini, from_openai, is_openai_usage_only_chunk, with_openai_stream_usage,
)
from tests.support.ai import CLAUDE, MESSAGES, assert_charged_exactly, expected_cost

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


def sse(*frames: str | dict, event: str | None = None) -> bytes:
    """Data-only frames (OpenAI chat, Gemini), each dict serialized as the upstream does."""
    return b"".join(b"data: " + (orjson.dumps(f) if isinstance(f, dict) else f.encode()) + b"\n\n" for f in frames)


def named_sse(*events: dict) -> bytes:
    """Frames with an `event:` line equal to the data's type (Anthropic, OpenAI Responses)."""
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def meter_stream(meter, chunks: list[bytes]):
    decoder = SseDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            meter.feed(event)
    for event in decoder.close():
        meter.feed(event)
    return meter


def data_event(data: str) -> SseEvent:
    return SseEvent(raw=b"data: " + data.encode() + b"\n\n", event=None, data=data, id=None, retry_ms=None,
                    dispatched=True)


# ---------- OpenAI usage objects ----------

OPENAI_CASES = [
    ("chat with cache and reasoning",  # completion_tokens already includes the reasoning tokens
     {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
      "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
      "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                    "rejected_prediction_tokens": 0}},
     Usage(86, 1920, 300)),
    ("chat without details", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Usage(10, 0, 5)),
    ("chat with null details", {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None},
     Usage(10, 0, 5)),
    ("responses API",
     {"input_tokens": 9908, "input_tokens_details": {"cached_tokens": 9856}, "output_tokens": 12,
      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9920},
     Usage(52, 9856, 12)),
    ("embeddings", {"prompt_tokens": 8, "total_tokens": 8}, Usage(8, 0, 0)),
    ("cached larger than prompt is clamped", {"prompt_tokens": 5, "completion_tokens": 1,
                                              "prompt_tokens_details": {"cached_tokens": 50}}, Usage(0, 5, 1)),
    ("string counts are absent", {"prompt_tokens": "10", "completion_tokens": 5}, Usage(0, 0, 5)),
    ("negative counts are absent", {"prompt_tokens": -10, "completion_tokens": 5}, Usage(0, 0, 5)),
    ("bool counts are absent", {"prompt_tokens": True, "completion_tokens": 5}, Usage(0, 0, 5)),
    ("float counts are absent", {"prompt_tokens": 10.0, "completion_tokens": 5}, Usage(0, 0, 5)),
    ("absurd counts are absent", {"prompt_tokens": 10**13, "completion_tokens": 5}, Usage(0, 0, 5)),
    ("garbage cached count ignored", {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": -3}},
     Usage(10, 0, 0)),
    ("details not a dict", {"input_tokens": 10, "input_tokens_details": [1]}, Usage(10, 0, 0)),
    ("empty object", {}, None),
    ("only garbage", {"prompt_tokens": None, "completion_tokens": "x", "total_tokens": 9}, None),
    ("null", None, None),
    ("a list", [1, 2], None),
    ("a string", "usage", None),
]


@pytest.mark.parametrize("usage_obj,expected", [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES])
def test_from_openai(usage_obj, expected):
    assert from_openai(usage_obj) == expected


# ---------- Anthropic usage objects ----------

ANTHROPIC_CASES = [
    ("plain", {"input_tokens": 11, "output_tokens": 6}, Usage(11, 0, 6)),
    ("cache read and write",  # input_tokens excludes both; writes are billed as input
     {"input_tokens": 25, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 5,
      "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 0},
      "output_tokens": 8, "service_tier": "standard"},
     Usage(35, 5, 8)),
    ("thinking details are not added again",
     {"input_tokens": 40, "output_tokens": 8, "output_tokens_details": {"thinking_tokens": 3}}, Usage(40, 0, 8)),
    ("null cache fields", {"input_tokens": 3, "cache_creation_input_tokens": None, "cache_read_input_tokens": None,
                           "output_tokens": 1}, Usage(3, 0, 1)),
    ("garbage", {"input_tokens": "3", "output_tokens": -1}, None),
    ("not a dict", 42, None),
]


@pytest.mark.parametrize("usage_obj,expected", [c[1:] for c in ANTHROPIC_CASES], ids=[c[0] for c in ANTHROPIC_CASES])
def test_from_anthropic(usage_obj, expected):
    assert from_anthropic(usage_obj) == expected


# ---------- Gemini usageMetadata ----------

GEMINI_CASES = [
    ("thinking model (Gemini API docs sample)",  # total 890 = 34 + 418 + 438: candidates exclude thoughts
     {"promptTokenCount": 34, "candidatesTokenCount": 418, "totalTokenCount": 890,
      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 34}], "thoughtsTokenCount": 438},
     Usage(34, 0, 856)),
    ("cached content is inside the prompt count",
     {"promptTokenCount": 16000, "cachedContentTokenCount": 5200, "candidatesTokenCount": 300,
      "totalTokenCount": 16300}, Usage(10800, 5200, 300)),
    ("tool-use prompt tokens are input",
     {"promptTokenCount": 100, "cachedContentTokenCount": 40, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
      "toolUsePromptTokenCount": 5, "totalTokenCount": 155}, Usage(65, 40, 50)),
    ("zero counts are omitted on the wire", {"promptTokenCount": 7, "totalTokenCount": 7}, Usage(7, 0, 0)),
    ("totalTokenCount alone is not usage", {"totalTokenCount": 99}, None),
    ("garbage", {"promptTokenCount": "7", "candidatesTokenCount": False}, None),
    ("not a dict", [], None),
]


@pytest.mark.parametrize("usage_obj,expected", [c[1:] for c in GEMINI_CASES], ids=[c[0] for c in GEMINI_CASES])
def test_from_gemini(usage_obj, expected):
    assert from_gemini(usage_obj) == expected


def test_usage_total_and_validation():
    """total sums the three counts; a negative or non-int count cannot be built."""
    assert Usage(1, 2, 3).total == 6
    for bad in (-1, 1.0, True, "1"):
        with pytest.raises(ValueError):
            Usage(bad, 0, 0)


JSON_GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=5)
    | st.sampled_from(["message_start", "message_delta", "content_block_delta", "text_delta", "response.completed",
                       "response.output_text.delta", "STOP"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                         "prompt_tokens_details", "input_tokens_details", "cached_tokens",
                         "cache_creation_input_tokens", "cache_read_input_tokens", "promptTokenCount",
                         "cachedContentTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
                         "toolUsePromptTokenCount", "usage", "usageMetadata", "choices", "delta", "content", "text",
                         "tool_calls", "function", "arguments", "message", "response", "candidates", "parts",
                         "finishReason", "type"]), children, max_size=4),
    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(JSON_GARBAGE)
def test_upstream_garbage_never_raises(value):
    """Whatever JSON the upstream sends, the readers return a valid Usage or None."""
    for read in (from_openai, from_anthropic, from_gemini):
        result = read(value)
        assert result is None or isinstance(result, Usage)
    event = data_event(orjson.dumps(value).decode())
    for meter in (OpenAIChatMeter(), OpenAIResponsesMeter(), AnthropicMeter(), GeminiMeter()):
        meter.feed(event)
    is_openai_usage_only_chunk(event)


# ---------- real streams ----------

def openai_chunk(choices: list, usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-CVFj", "object": "chat.completion.chunk", "created": 1761564674,
            "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_560af6e559",
            "choices": choices, "usage": usage, "obfuscation": "2c6Xq1"}


OPENAI_USAGE = {"prompt_tokens": 1200, "completion_tokens": 7, "total_tokens": 1207,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
OPENAI_CHAT_BODY = [
    openai_chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                   "logprobs": None, "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {"content": " wörld"}, "logprobs": None, "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]),
]
OPENAI_CHAT_STREAM = sse(*OPENAI_CHAT_BODY, openai_chunk([], OPENAI_USAGE), "[DONE]")

OPENAI_TOOL_STREAM = sse(
    openai_chunk([{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                   "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
                   "finish_reason": None}]),
    openai_chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
    "[DONE]")

OPENAI_COMPLETIONS_STREAM = sse(
    {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
     "choices": [{"text": "Say", "index": 0, "logprobs": None, "finish_reason": None}], "usage": None},
    {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
     "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
    "[DONE]")


def responses_event(kind: str, sequence_number: int, **fields) -> dict:
    return {"type": kind, "sequence_number": sequence_number, **fields}


RESPONSES_USAGE = {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                   "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123}


def responses_body(status: str, usage: dict | None) -> dict:
    return {"id": "resp_67c9", "object": "response", "created_at": 1741290958, "status": status,
            "model": "o4-mini-2025-04-16", "output": [], "usage": usage}


RESPONSES_STREAM = named_sse(
    responses_event("response.created", 0, response=responses_body("in_progress", None)),
    responses_event("response.in_progress", 1, response=responses_body("in_progress", None)),
    responses_event("response.output_item.added", 2, output_index=0,
                    item={"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant",
                          "content": []}),
    responses_event("response.output_text.delta", 3, item_id="msg_1", output_index=0, content_index=0, delta="Hi"),
    responses_event("response.output_text.delta", 4, item_id="msg_1", output_index=0, content_index=0, delta=" there!"),
    responses_event("response.output_text.done", 5, item_id="msg_1", output_index=0, content_index=0,
                    text="Hi there!"),
    responses_event("response.completed", 6, response=responses_body("completed", RESPONSES_USAGE)),
)

ANTHROPIC_EVENTS = [  # anthropic-sdk-python tests/lib/streaming/fixtures/message_delta_fields_response.txt
    {"type": "message_start", "message": {
        "id": "msg_01MessageDeltaFields", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 5,
                  "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 0},
                  "output_tokens": 1, "service_tier": "standard"}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello there!"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"input_tokens": 40, "cache_creation_input_tokens": 12, "cache_read_input_tokens": 7,
               "output_tokens": 8, "output_tokens_details": {"thinking_tokens": 3},
               "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0}}},
    {"type": "message_stop"},
]
ANTHROPIC_STREAM = named_sse(*ANTHROPIC_EVENTS)
ANTHROPIC_USAGE_OMITTED_STREAM = named_sse(  # fixtures/usage_omitted_response.txt: no usage in message_start
    {"type": "message_start", "message": {"id": "msg_usage_omitted", "type": "message", "role": "assistant",
                                          "content": [], "model": "claude-test", "stop_reason": None,
                                          "stop_sequence": None}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"input_tokens": 12, "output_tokens": 6}},
    {"type": "message_stop"},
)


def gemini_chunk(text: str, usage: dict, finish: str | None = None, thought: bool = False) -> dict:
    part = {"text": text, "thought": True} if thought else {"text": text}
    candidate = {"content": {"parts": [part], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
            "responseId": "3w4Vad6yF-y1vdIP_q_zgAw"}


GEMINI_PROMPT = {"promptTokenCount": 2100, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2100}]}
GEMINI_FINAL_USAGE = {**GEMINI_PROMPT, "cachedContentTokenCount": 2048, "candidatesTokenCount": 9,
                      "thoughtsTokenCount": 120, "totalTokenCount": 2229,
                      "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 2048}]}
GEMINI_STREAM = sse(  # every chunk repeats a running usageMetadata; the last one is complete
    gemini_chunk("Planning the answer", {**GEMINI_PROMPT, "totalTokenCount": 2220, "thoughtsTokenCount": 120},
                 thought=True),
    gemini_chunk("Bonjour", {**GEMINI_PROMPT, "totalTokenCount": 2221, "thoughtsTokenCount": 120}),
    gemini_chunk(" le monde !", GEMINI_FINAL_USAGE, finish="STOP"),
)

STREAM_CASES = [
    ("openai chat", OpenAIChatMeter, OPENAI_CHAT_STREAM, Usage(176, 1024, 7), len("Hello wörld"), True),
    ("openai tool call", OpenAIChatMeter, OPENAI_TOOL_STREAM, None, len('{"city":"Paris"}'), True),
    ("openai legacy completions", OpenAIChatMeter, OPENAI_COMPLETIONS_STREAM, Usage(5, 0, 1), 3, True),
    ("openai responses", OpenAIResponsesMeter, RESPONSES_STREAM, Usage(36, 0, 87), len("Hi there!"), True),
    ("anthropic", AnthropicMeter, ANTHROPIC_STREAM, Usage(52, 7, 8), len("Hmm.Hello there!"), True),
    ("anthropic usage omitted at start", AnthropicMeter, ANTHROPIC_USAGE_OMITTED_STREAM, Usage(12, 0, 6), 5, True),
    ("gemini", GeminiMeter, GEMINI_STREAM, Usage(52, 2048, 129),
     len("Planning the answer") + len("Bonjour le monde !"), True),
]


@pytest.mark.parametrize("meter_class,stream,usage,chars,finished", [c[1:] for c in STREAM_CASES],
                         ids=[c[0] for c in STREAM_CASES])
def test_meter_reads_a_real_stream(meter_class, stream, usage, chars, finished):
    meter = meter_stream(meter_class(), [stream])
    assert (meter.usage, meter.streamed_output_chars, meter.finished) == (usage, chars, finished)


def test_anthropic_meter_after_message_start_only():
    """A stream cut after message_start reports the start's counts and is not finished."""
    cut = named_sse(*ANTHROPIC_EVENTS[:3])
    meter = meter_stream(AnthropicMeter(), [cut])
    assert (meter.usage, meter.streamed_output_chars, meter.finished) == (Usage(35, 5, 1), 4, False)


def test_anthropic_meter_does_not_need_message_stop():
    """The final blank line (and message_stop) may never arrive; message_delta already settles usage."""
    stream = named_sse(*ANTHROPIC_EVENTS[:-1]) + b'event: message_stop\ndata: {"type":"message_stop"}'
    meter = meter_stream(AnthropicMeter(), [stream])
    assert (meter.usage, meter.finished) == (Usage(52, 7, 8), True)


def test_anthropic_null_delta_fields_keep_the_start_values():
    """A message_delta with null input/cache fields overwrites only output_tokens."""
    stream = named_sse(ANTHROPIC_EVENTS[0], {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": {"input_tokens": None, "cache_read_input_tokens": None,
                                                       "output_tokens": 30}})
    assert meter_stream(AnthropicMeter(), [stream]).usage == Usage(35, 5, 30)


def test_openai_stream_cut_before_usage():
    """A chat stream cut before the usage chunk has no usage, is not finished, and counts what streamed."""
    meter = meter_stream(OpenAIChatMeter(), [sse(*OPENAI_CHAT_BODY)])
    assert (meter.usage, meter.streamed_output_chars, meter.finished) == (None, len("Hello wörld"), False)


def test_responses_incomplete_and_failed_carry_usage():
    """response.incomplete and response.failed end the stream and carry usage like response.completed."""
    for kind in ("response.incomplete", "response.failed"):
        stream = named_sse(responses_event(kind, 0, response=responses_body(kind.split(".")[1], RESPONSES_USAGE)))
        meter = meter_stream(OpenAIResponsesMeter(), [stream])
        assert (meter.usage, meter.finished) == (Usage(36, 0, 87), True)


def test_gemini_later_usage_supersedes_earlier():
    """Gemini's usageMetadata is a running total: the last one is taken, never a sum."""
    meter = meter_stream(GeminiMeter(), [GEMINI_STREAM])
    assert meter.usage == from_gemini(GEMINI_FINAL_USAGE)


def test_meters_ignore_non_json_and_comments():
    """[DONE], comments and non-JSON data change nothing but the OpenAI finished flag."""
    stream = b": keep-alive\n\ndata: [DONE]\n\ndata: not json\n\ndata: [1, 2]\n\n"
    for meter_class in (OpenAIChatMeter, OpenAIResponsesMeter, AnthropicMeter, GeminiMeter):
        meter = meter_stream(meter_class(), [stream])
        assert (meter.usage, meter.streamed_output_chars) == (None, 0)
        assert meter.finished == (meter_class is OpenAIChatMeter)


# ---------- the OpenAI usage chunk filter and request helper ----------

USAGE_CHUNK_CASES = [
    ("the include_usage chunk", orjson.dumps(openai_chunk([], OPENAI_USAGE)).decode(), True),
    ("a content chunk with null usage", orjson.dumps(OPENAI_CHAT_BODY[1]).decode(), False),
    ("content chunk with usage (non-OpenAI upstreams)",
     orjson.dumps(openai_chunk(OPENAI_CHAT_BODY[1]["choices"], OPENAI_USAGE)).decode(), False),
    ("empty choices, null usage", orjson.dumps(openai_chunk([], None)).decode(), False),
    ("done sentinel", "[DONE]", False),
    ("not json", "{", False),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in USAGE_CHUNK_CASES], ids=[c[0] for c in USAGE_CHUNK_CASES])
def test_is_openai_usage_only_chunk(data, expected):
    assert is_openai_usage_only_chunk(data_event(data)) is expected


def test_a_non_dispatched_frame_is_not_the_usage_chunk():
    """A comment frame is never taken for the usage chunk."""
    comment = SseEvent(raw=b": x\n\n", event=None, data="", id=None, retry_ms=None, dispatched=False)
    assert is_openai_usage_only_chunk(comment) is False


STREAM_OPTION_CASES = [
    ("stream without options", {"model": "gpt-4o", "stream": True},
     {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}, False),
    ("client asked", {"stream": True, "stream_options": {"include_usage": True}},
     {"stream": True, "stream_options": {"include_usage": True}}, True),
    ("client said false", {"stream": True, "stream_options": {"include_usage": False}},
     {"stream": True, "stream_options": {"include_usage": True}}, False),
    ("other options kept", {"stream": True, "stream_options": {"include_obfuscation": False}},
     {"stream": True, "stream_options": {"include_obfuscation": False, "include_usage": True}}, False),
    ("null options", {"stream": True, "stream_options": None},
     {"stream": True, "stream_options": {"include_usage": True}}, False),
    ("non-stream untouched", {"model": "gpt-4o", "stream_options": None}, {"model": "gpt-4o", "stream_options": None},
     False),
    ("stream false untouched", {"stream": False}, {"stream": False}, False),
    ("stream as a string is not a stream", {"stream": "true"}, {"stream": "true"}, False),
]


@pytest.mark.parametrize("body,sent,asked", [c[1:] for c in STREAM_OPTION_CASES],
                         ids=[c[0] for c in STREAM_OPTION_CASES])
def test_with_openai_stream_usage(body, sent, asked):
    original = copy.deepcopy(body)
    assert with_openai_stream_usage(body) == (sent, asked)
    assert body == original  # never mutated


# ---------- properties ----------

@st.composite
def chunkings(draw, stream: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    return [stream[start:end] for start, end in zip(bounds, bounds[1:])]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_meters_give_the_same_usage_whatever_the_chunking(data):
    """Each real stream, cut anywhere, meters to the same usage, chars and finished flag."""
    _, meter_class, stream, usage, chars, finished = data.draw(st.sampled_from(STREAM_CASES))
    crlf = data.draw(st.booleans())
    stream = stream.replace(b"\n", b"\r\n") if crlf else stream
    meter = meter_stream(meter_class(), data.draw(chunkings(stream)))
    assert (meter.usage, meter.streamed_output_chars, meter.finished) == (usage, chars, finished)


COUNT = st.integers(0, 200_000)


@settings(max_examples=60, deadline=None)
@given(st.lists(COUNT, min_size=1, max_size=8), COUNT, st.data())
def test_anthropic_meter_equals_the_last_cumulative_output(outputs, input_tokens, data):
    """However many message_delta events arrive, output_tokens is the last one's value, not a sum."""
    outputs = sorted(outputs)  # cumulative counts only grow
    events = [{"type": "message_start", "message": {"usage": {"input_tokens": input_tokens, "output_tokens": 1}}}]
    events += [{"type": "message_delta", "delta": {}, "usage": {"output_tokens": n}} for n in outputs]
    stream = named_sse(*events)
    meter = meter_stream(AnthropicMeter(), data.draw(chunkings(stream)))
    assert meter.usage == Usage(input_tokens, 0, outputs[-1])


PRICE = st.builds(Price, st.integers(0, 20_000_000), st.integers(0, 80_000_000), st.integers(0, 20_000_000))


@settings(max_examples=80, deadline=None)
@given(COUNT, COUNT, COUNT, COUNT, PRICE, st.data())
def test_stream_and_json_usage_cost_the_same(prompt, cached, output, extra, price, data):
    """For each provider, the streamed call and the same call answered as JSON cost the same."""
    cached = min(cached, prompt)
    openai_usage = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
                    "prompt_tokens_details": {"cached_tokens": cached},
                    "completion_tokens_details": {"reasoning_tokens": min(extra, output)}}
    responses_usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                       "output_tokens": output, "total_tokens": prompt + output}
    anthropic_start = {"input_tokens": prompt, "cache_creation_input_tokens": extra, "cache_read_input_tokens": cached,
                       "output_tokens": 1}
    anthropic_json = {**anthropic_start, "output_tokens": output}
    gemini_usage = {"promptTokenCount": prompt, "cachedContentTokenCount": cached, "candidatesTokenCount": output,
                    "thoughtsTokenCount": extra, "totalTokenCount": prompt + output + extra}
    calls = [
        (OpenAIChatMeter, sse(*OPENAI_CHAT_BODY, openai_chunk([], openai_usage), "[DONE]"),
         from_openai(openai_usage)),
        (OpenAIResponsesMeter, named_sse(responses_event("response.completed", 0,
                                                         response=responses_body("completed", responses_usage))),
         from_openai(responses_usage)),
        (AnthropicMeter, named_sse({"type": "message_start", "message": {"usage": anthropic_start}},
                                   {"type": "message_delta", "delta": {}, "usage": {"output_tokens": output}}),
         from_anthropic(anthropic_json)),
        (GeminiMeter, sse(gemini_chunk("a", {"promptTokenCount": prompt}),
                          gemini_chunk("b", gemini_usage, finish="STOP")),
         from_gemini(gemini_usage)),
    ]
    for meter_class, stream, json_usage in calls:
        meter = meter_stream(meter_class(), data.draw(chunkings(stream)))
        assert meter.usage == json_usage
        assert cost_micro(meter.usage, price) == cost_micro(json_usage, price)


# -- whole answers without usage: the text they generated --------------------------------------

@pytest.mark.parametrize("kind, answer, chars", [
    ("chat", {"choices": [{"message": {"content": "hello", "tool_calls": [
        {"function": {"name": "f", "arguments": "{\"a\":1}"}}]}}, {"message": {"refusal": "no"}}]}, 5 + 7 + 2),
    ("completions", {"choices": [{"text": "abc"}, {"text": "de"}]}, 5),
    ("responses", {"output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
                              {"type": "message", "content": [{"type": "output_text", "text": "hello"}]},
                              {"type": "function_call", "arguments": "{}"}]}, 5 + 5 + 2),
    ("messages", {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "hi"},
                              {"type": "tool_use", "input": {"q": 1}}]}, 3 + 2 + len('{"q":1}')),
    ("generate", {"candidates": [{"content": {"parts": [{"text": "abc"}, {"functionCall": {"name": "f"}}]}}]},
     3 + len('{"name":"f"}')),
    ("embeddings", {"data": [{"embedding": [0.1]}]}, 0),
    ("chat", {"choices": "garbage"}, 0),
    ("generate", {"candidates": [{"content": None}, 7]}, 0),
])
def test_answer_text_chars(kind, answer, chars):
    assert answer_text_chars(kind, answer) == chars


async def test_anthropic_cache_reads_and_writes_are_priced(stack):
    before = await stack.balance()
    client = stack.anthropic()
    system = [{"type": "text", "text": "y" * 4200, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(model=CLAUDE, max_tokens=4, system=system, messages=MESSAGES)
    second = await client.messages.create(model=CLAUDE, max_tokens=4, system=system, messages=MESSAGES)
    await client.close()
    assert first.usage.cache_creation_input_tokens and second.usage.cache_read_input_tokens
    # Cache writes are billed as input, cache reads at the cached price (decision 0011).
    await assert_charged_exactly(
        stack, before,
        (first.usage.input_tokens + first.usage.cache_creation_input_tokens, 0, 4),
        (second.usage.input_tokens, second.usage.cache_read_input_tokens, 4))


async def test_gemini_thinking_tokens_are_charged_once(stack):
    client = stack.gemini()
    result = await client.models.generate_content(
        model="gemini-2.5-flash", contents="Think about it",
        config=genai_types.GenerateContentConfig(max_output_tokens=10))
    await client.aclose()
    u = result.usage_metadata
    assert u.thoughts_token_count
    assert (await stack.charges())[-1] == expected_cost(u.prompt_token_count, 0,
                                                        u.candidates_token_count + u.thoughts_token_count)
