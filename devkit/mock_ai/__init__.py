"""A mock of the OpenAI, Anthropic and Gemini HTTP APIs: their wire formats, usage numbers and failures.

The official SDKs run against it unchanged, so the gateway can be tested and benchmarked offline.
Everything it answers is a pure function of the request, except the fault/latency controls under
/_mock/ai/ and the Anthropic prompt cache (first sight writes, later sight reads, as the real one does).

Usage numbers (documented in full in `measure_input` and `plan_output`):
- a text costs ceil(len(text) / 4) tokens; every message (system prompt and instructions included)
  adds MESSAGE_OVERHEAD_TOKENS; a prompt costs at least 1 token;
- a reply costs min(max tokens asked for, REPLY_TOKENS_DEFAULT) tokens and its text has exactly
  that many words, streamed or not; reasoning models (OpenAI `o*`, Gemini `*thinking*` / `*2.5*`)
  spend half of it (rounded down) thinking;
- OpenAI and Gemini treat every text of at least CACHE_MIN_TOKENS tokens as already cached;
  Anthropic caches the prefix up to the last block carrying `cache_control` when it is at least
  CACHE_MIN_TOKENS long.

Controls, for tests that cannot add headers through the gateway:
- POST /_mock/ai/faults {"mode", "count": 1, "provider": null, "delay_ms", "retry_after_s": 1}: the
  next `count` AI requests (of that provider) fail: "500", "429" (with Retry-After), "timeout" (no
  answer for delay_ms, default 300 s, until the client leaves), "reset" (TCP RST before any answer),
  "reset_mid_stream" (half the frames or half the JSON body, then the connection is cut),
  "slow_stream" (delay_ms, default 1000, between frames or before a JSON answer); "none" clears.
  GET answers the fault still pending.
- POST /_mock/ai/latency {"ms", "chunk_ms"}: a wait before every answer, and between stream frames.
- POST /_mock/ai/keys {"keys": [...] | null}: accept exactly these upstream keys, or (null, the default)
  any key starting with "sk-mock" or "mock-".
- GET /_mock/ai/requests: the last REQUEST_LOG_MAX AI requests (method, path, raw query, every header
  lower-cased, parsed JSON body); DELETE clears them. POST /_mock/ai/reset restores every default.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROVIDERS = ("openai", "anthropic", "gemini")
FAULT_MODES = ("none", "500", "429", "timeout", "reset", "reset_mid_stream", "slow_stream")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_TOKENS_DEFAULT = 20
CACHE_MIN_TOKENS = 1024  # OpenAI's and Anthropic's smallest cacheable prompt
RESPONSES_MAX_OUTPUT_TOKENS_MIN = 16  # the Responses API refuses smaller limits

REQUEST_LOG_MAX = 100
ANTHROPIC_CACHE_ENTRIES_MAX = 1000
FAULT_COUNT_MAX = 10_000
LATENCY_MS_MAX = 60_000
CHUNK_DELAY_MS_DEFAULT = 2
SLOW_STREAM_DELAY_MS_DEFAULT = 1000
TIMEOUT_FAULT_MS_DEFAULT = 300_000  # longer than any client timeout; ends early when the client leaves
RETRY_AFTER_S_DEFAULT = 1
DISCONNECT_POLL_S = 0.05
KEY_PREFIXES_DEFAULT = ("sk-mock", "mock-")

REPLY_WORDS = ("The", "mock", "upstream", "answers", "with", "exactly", "one", "word", "per", "token.")
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    kind: str  # "chat" or "embedding"
    reasoning: bool = False
    dimensions: int = 0  # embedding models only


OPENAI_MODELS = {
    "gpt-4o-mini": ModelInfo("chat"),
    "gpt-4o": ModelInfo("chat"),
    "gpt-3.5-turbo-instruct": ModelInfo("chat"),
    "o3-mini": ModelInfo("chat", reasoning=True),
    "o4-mini": ModelInfo("chat", reasoning=True),
    "text-embedding-3-small": ModelInfo("embedding", dimensions=1536),
    "text-embedding-3-large": ModelInfo("embedding", dimensions=3072),
}
ANTHROPIC_MODELS = {name: ModelInfo("chat") for name in (
    "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "claude-haiku-4-5", "claude-sonnet-4-5",
    "claude-sonnet-4-6", "claude-opus-4-1")}
GEMINI_MODELS = {name: ModelInfo("chat", reasoning="thinking" in name or "2.5" in name) for name in (
    "gemini-2.0-flash", "gemini-2.0-flash-thinking-exp", "gemini-2.5-flash", "gemini-2.5-pro")}
MODELS = {"openai": OPENAI_MODELS, "anthropic": ANTHROPIC_MODELS, "gemini": GEMINI_MODELS}
MODEL_CREATED_S = 1_700_000_000


# ---------------------------------------------------------------- usage (pure)


@dataclass(frozen=True, slots=True)
class Usage:
    """One call's token counts, before each provider names and splits them its own way."""

    input_tokens: int  # every prompt token, cached ones included
    output_tokens: int  # every generated token, reasoning included
    cached_tokens: int = 0  # part of input_tokens read from a cache
    cache_write_tokens: int = 0  # part of input_tokens written to a cache (Anthropic)
    reasoning_tokens: int = 0  # part of output_tokens spent thinking
    truncated: bool = False  # the caller's token limit cut the reply short

    @property
    def visible_tokens(self) -> int:
        return self.output_tokens - self.reasoning_tokens


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def measure_input(messages: Iterable[list[str]]) -> int:
    """Prompt tokens: the texts of each message plus a fixed overhead per message, at least 1."""
    total = sum(MESSAGE_OVERHEAD_TOKENS + sum(text_tokens(text) for text in texts) for texts in messages)
    return max(1, total)


def cached_by_length(messages: Iterable[list[str]]) -> int:
    """OpenAI/Gemini rule: every text of at least CACHE_MIN_TOKENS tokens counts as already cached."""
    return sum(tokens for texts in messages for text in texts if (tokens := text_tokens(text)) >= CACHE_MIN_TOKENS)


def plan_output(limit: int | None, *, reasoning: bool, reasoning_max: int | None = None) -> tuple[int, int, bool]:
    """(output tokens, reasoning tokens among them, truncated) for a reply capped at `limit`."""
    output_tokens = REPLY_TOKENS_DEFAULT if limit is None else min(limit, REPLY_TOKENS_DEFAULT)
    reasoning_tokens = output_tokens // 2 if reasoning else 0
    if reasoning_max is not None and reasoning_max >= 0:
        reasoning_tokens = min(reasoning_tokens, reasoning_max)
    return output_tokens, reasoning_tokens, limit is not None and limit < REPLY_TOKENS_DEFAULT


def reply_pieces(count: int) -> list[str]:
    """The reply as `count` word tokens; joined they give the reply text."""
    return [(" " if number else "") + REPLY_WORDS[number % len(REPLY_WORDS)] for number in range(count)]


def content_texts(content: Any) -> list[str]:
    """Every text in a message's content: a string, or parts/blocks with `text` (nested `content` too)."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif "content" in part:
                    texts.extend(content_texts(part["content"]))
    return texts


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the text, so equal inputs embed equally."""
    generator = random.Random(hashlib.sha256(text.encode()).digest())
    values = [generator.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


# ---------------------------------------------------------------- state


@dataclass(slots=True)
class Fault:
    mode: str
    remaining: int
    provider: str | None
    delay_ms: int | None
    retry_after_s: int


@dataclass(slots=True)
class AiState:
    """Everything the mock remembers, on the app so that each server has its own."""

    accepted_keys: frozenset[str] | None = None  # None: any key with one of KEY_PREFIXES_DEFAULT
    fault: Fault | None = None
    latency_ms: int = 0
    chunk_delay_ms: int = CHUNK_DELAY_MS_DEFAULT
    requests: deque = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_MAX))
    anthropic_cache: OrderedDict = field(default_factory=OrderedDict)  # prefix digest -> None, LRU order
    serial: int = 0

    def next_id(self) -> str:
        self.serial += 1
        return f"mock{self.serial:08d}"

    def accepts(self, key: str) -> bool:
        if self.accepted_keys is not None:
            return key in self.accepted_keys
        return key.startswith(KEY_PREFIXES_DEFAULT)

    def take_fault(self, provider: str) -> Fault | None:
        """The fault for this request, if any; each matching request uses up one."""
        fault = self.fault
        if fault is None or (fault.provider is not None and fault.provider != provider):
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault

    def remember_prefix(self, digest: str) -> bool:
        """True when the prefix was cached already; either way it is cached now."""
        seen = digest in self.anthropic_cache
        self.anthropic_cache[digest] = None
        self.anthropic_cache.move_to_end(digest)
        while len(self.anthropic_cache) > ANTHROPIC_CACHE_ENTRIES_MAX:
            self.anthropic_cache.popitem(last=False)
        return seen

    def reset(self) -> None:
        self.accepted_keys, self.fault, self.latency_ms = None, None, 0
        self.chunk_delay_ms = CHUNK_DELAY_MS_DEFAULT
        self.requests.clear()
        self.anthropic_cache.clear()


AI_STATE_KEY = web.AppKey("mock_ai_state", AiState)


# ---------------------------------------------------------------- errors and replies


class MockApiError(Exception):
    """An error answer; rendered in the shape of the provider the request was for."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer, built before any byte is sent, so faults can cut it anywhere."""

    parts: tuple[bytes, ...]  # the JSON body, or one SSE frame per part
    content_type: str = "application/json"
    status: int = 200
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)


OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                      404: "invalid_request_error", 413: "invalid_request_error", 429: "requests",
                      500: "server_error", 503: "server_error"}
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 503: "api_error", 529: "overloaded_error"}
GEMINI_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def dump_compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def render_error(provider: str, error: MockApiError, request_id: str) -> Reply:
    if provider == "openai":
        body: dict[str, Any] = {"error": {"message": error.message, "type": OPENAI_ERROR_TYPES.get(
            error.status, "invalid_request_error"), "param": error.param, "code": error.code}}
        data = json.dumps(body, indent=2).encode()  # the real API pretty-prints its errors
    elif provider == "anthropic":
        body = {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(error.status, "api_error"),
                                           "message": error.message}, "request_id": f"req_{request_id}"}
        data = dump_compact(body)
    else:
        body = {"error": {"code": error.status, "message": error.message,
                          "status": GEMINI_STATUSES.get(error.status, "UNKNOWN")}}
        data = json.dumps(body, indent=2).encode()
    return Reply((data,), status=error.status, headers={**provider_headers(provider, request_id), **error.headers})


def provider_headers(provider: str, request_id: str) -> dict[str, str]:
    """The request-id header each API sets on every answer."""
    if provider == "openai":
        return {"x-request-id": f"req_{request_id}"}
    if provider == "anthropic":
        return {"request-id": f"req_{request_id}"}
    return {}


def json_reply(provider: str, request_id: str, body: Any, *, indent: int | None = None) -> Reply:
    data = json.dumps(body, indent=indent).encode() if indent else dump_compact(body)
    return Reply((data,), headers=provider_headers(provider, request_id))


def sse_reply(provider: str, request_id: str, frames: list[bytes], content_type: str = SSE_CONTENT_TYPE) -> Reply:
    return Reply(tuple(frames), content_type=content_type, stream=True, headers=provider_headers(provider, request_id))


def find_model(provider: str, name: Any, *, kind: str, endpoint: str, version: str = "v1beta") -> ModelInfo:
    if not isinstance(name, str) or not name:
        raise MockApiError(400, "you must provide a model parameter", param="model")
    model = MODELS[provider].get(name)
    if model is None:
        if provider == "openai":
            raise MockApiError(404, f"The model `{name}` does not exist or you do not have access to it.",
                               code="model_not_found")
        if provider == "anthropic":
            raise MockApiError(404, f"model: {name}")
        raise MockApiError(404, f"models/{name} is not found for API version {version}, or is not supported for "
                                f"{endpoint}. Call ListModels to see the list of available models and their "
                                "supported methods.")
    if model.kind != kind:
        raise MockApiError(404 if provider != "openai" else 400,
                           f"The model `{name}` is not supported by the {endpoint} endpoint.", param="model")
    return model


def read_limit(body: dict, *names: str, minimum: int = 1) -> int | None:
    """The first token limit given under one of `names`, checked to be an integer >= minimum."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise MockApiError(400, f"Invalid '{name}': expected an integer >= {minimum}.", param=name,
                               code="integer_below_min_value")
        return value
    return None


def require_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise MockApiError(400, "The request body must be a JSON object.")
    return body


# ---------------------------------------------------------------- OpenAI


def openai_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def openai_stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage); stream_options without stream is refused, as the real API does."""
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise MockApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options", code="invalid_value")
    return stream, stream and isinstance(options, dict) and options.get("include_usage") is True


def openai_measure(messages: list[list[str]], limit: int | None, model: ModelInfo) -> Usage:
    output_tokens, reasoning_tokens, truncated = plan_output(limit, reasoning=model.reasoning)
    return Usage(measure_input(messages), output_tokens, cached_tokens=cached_by_length(messages),
                 reasoning_tokens=reasoning_tokens, truncated=truncated)


def openai_frame(payload: dict) -> bytes:
    return b"data: " + dump_compact(payload) + b"\n\n"


def openai_chat(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="chat/completions")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MockApiError(400, "'messages' must be a non-empty array.", param="messages")
    if model.reasoning and body.get("max_tokens") is not None:
        raise MockApiError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                "Use 'max_completion_tokens' instead.", param="max_tokens",
                           code="unsupported_parameter")
    stream, include_usage = openai_stream_flags(body)
    limit = read_limit(body, "max_completion_tokens", "max_tokens")
    texts = [content_texts(message.get("content")) if isinstance(message, dict) else [] for message in messages]
    usage = openai_measure(texts, limit, model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "length" if usage.truncated else "stop"
    head = {"id": f"chatcmpl-{request_id}", "created": int(time.time()), "model": body["model"],
            "service_tier": "default", "system_fingerprint": "fp_mock"}
    if not stream:
        message = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
        return json_reply("openai", request_id, {
            **head, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": openai_usage(usage)})
    head = {**head, "object": "chat.completion.chunk"}
    tail = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return openai_frame({**head, "choices": [choice], **tail})

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": piece}) for piece in pieces]
    frames.append(chunk({}, finish))
    if include_usage:
        frames.append(openai_frame({**head, "choices": [], "usage": openai_usage(usage)}))
    frames.append(b"data: [DONE]\n\n")
    return sse_reply("openai", request_id, frames)


def prompt_texts(prompt: Any) -> list[list[str]]:
    """Legacy completions: a string, a list of strings, or token ids (one token each)."""
    if isinstance(prompt, str):
        return [[prompt]]
    if isinstance(prompt, list) and prompt and all(isinstance(item, int) for item in prompt):
        return [["x" * CHARS_PER_TOKEN * len(prompt)]]
    if isinstance(prompt, list) and prompt:
        return [[item] if isinstance(item, str) else ["x" * CHARS_PER_TOKEN * len(item)] for item in prompt]
    raise MockApiError(400, "'prompt' must be a string or an array.", param="prompt")


def openai_completions(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="completions")
    stream, include_usage = openai_stream_flags(body)
    usage = openai_measure(prompt_texts(body.get("prompt")), read_limit(body, "max_tokens"), model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "length" if usage.truncated else "stop"
    head = {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_mock"}
    if not stream:
        choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}
        return json_reply("openai", request_id, {**head, "choices": [choice], "usage": openai_usage(usage)})
    tail = {"usage": None} if include_usage else {}
    frames = [openai_frame({**head, "choices": [{"text": piece, "index": 0, "logprobs": None,
                                                 "finish_reason": None}], **tail}) for piece in pieces]
    frames.append(openai_frame({**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                                     "finish_reason": finish}], **tail}))
    if include_usage:
        frames.append(openai_frame({**head, "choices": [], "usage": openai_usage(usage)}))
    frames.append(b"data: [DONE]\n\n")
    return sse_reply("openai", request_id, frames)


def openai_embeddings(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="embedding", endpoint="embeddings")
    inputs = body.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or any(item in ("", []) for item in inputs):
        raise MockApiError(400, "'input' must be a non-empty string or array.", param="input")
    dimensions = read_limit(body, "dimensions") or model.dimensions
    if dimensions > model.dimensions:
        raise MockApiError(400, f"This model supports at most {model.dimensions} dimensions.", param="dimensions")
    encoding = body.get("encoding_format", "float")
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_vector(item if isinstance(item, str) else json.dumps(item), dimensions)
        # The SDK asks for base64 by default: little-endian float32, decoded on its side.
        value: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() \
            if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(text_tokens(item) if isinstance(item, str) else len(item) for item in inputs)
    return json_reply("openai", request_id, {"object": "list", "data": data, "model": body["model"],
                                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def openai_model_entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": MODEL_CREATED_S, "owned_by": "system"}


def openai_models(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    name = request.match_info.get("model_id")
    if name is None:
        return json_reply("openai", request_id, {"object": "list",
                                                 "data": [openai_model_entry(model) for model in OPENAI_MODELS]})
    if name not in OPENAI_MODELS:
        raise MockApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    return json_reply("openai", request_id, openai_model_entry(name))


def responses_input_texts(body: dict) -> list[list[str]]:
    items = body.get("input")
    if isinstance(items, str):
        messages = [[items]]
    elif isinstance(items, list) and items:
        messages = [content_texts(item.get("content", item.get("output"))) if isinstance(item, dict)
                    else content_texts([item]) for item in items]
    else:
        raise MockApiError(400, "'input' must be a string or a non-empty array.", param="input")
    if isinstance(body.get("instructions"), str):
        messages.insert(0, [body["instructions"]])
    return messages


def responses_object(body: dict, request_id: str, status: str, output: list, usage: Usage | None) -> dict:
    created = int(time.time())
    return {
        "id": f"resp_{request_id}", "object": "response", "created_at": created, "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "user": None, "metadata": {},
        "completed_at": created if status == "completed" else None,
        "usage": None if usage is None else {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


def openai_responses(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="responses")
    limit = read_limit(body, "max_output_tokens", minimum=RESPONSES_MAX_OUTPUT_TOKENS_MIN)
    usage = openai_measure(responses_input_texts(body), limit, model)
    text = "".join(pieces := reply_pieces(usage.visible_tokens))
    status = "incomplete" if usage.truncated else "completed"
    reasoning = [{"id": f"rs_{request_id}", "type": "reasoning", "summary": []}] if model.reasoning else []
    message_id, index = f"msg_{request_id}", len(reasoning)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    message = {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": [part]}
    if body.get("stream") is not True:
        return json_reply("openai", request_id,
                          responses_object(body, request_id, status, [*reasoning, message], usage))
    events: list[dict] = [
        {"type": "response.created", "response": responses_object(body, request_id, "in_progress", [], None)},
        {"type": "response.in_progress", "response": responses_object(body, request_id, "in_progress", [], None)},
    ]
    for item in reasoning:
        events += [{"type": "response.output_item.added", "output_index": 0, "item": item},
                   {"type": "response.output_item.done", "output_index": 0, "item": item}]
    where = {"item_id": message_id, "output_index": index, "content_index": 0}
    events += [
        {"type": "response.output_item.added", "output_index": index,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []} for piece in pieces),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": index, "item": message},
        {"type": f"response.{status}",
         "response": responses_object(body, request_id, status, [*reasoning, message], usage)},
    ]
    frames = [f"event: {event['type']}\ndata: ".encode() + dump_compact({**event, "sequence_number": number})
              + b"\n\n" for number, event in enumerate(events)]
    return sse_reply("openai", request_id, frames)


# ---------------------------------------------------------------- Anthropic


def anthropic_blocks(body: dict) -> list[list[tuple[str, bool]]]:
    """Per message (the system prompt first), its texts and whether each carries cache_control."""
    def blocks(content: Any) -> list[tuple[str, bool]]:
        if isinstance(content, str):
            return [(content, False)]
        if not isinstance(content, list):
            return []
        return [(text, isinstance(block, dict) and block.get("cache_control") is not None)
                for block in content for text in content_texts([block])]

    messages = [blocks(message.get("content")) if isinstance(message, dict) else []
                for message in body["messages"]]
    if body.get("system") is not None:
        messages.insert(0, blocks(body["system"]))
    return messages


def anthropic_measure(state: AiState, body: dict, model_name: str, limit: int | None) -> Usage:
    messages = anthropic_blocks(body)
    input_tokens = measure_input([text for text, _ in message] for message in messages)
    flat = [block for message in messages for block in message]
    marked = [number for number, (_, cached) in enumerate(flat) if cached]
    prefix = flat[: marked[-1] + 1] if marked else []
    prefix_tokens = sum(text_tokens(text) for text, _ in prefix)
    read = written = 0
    if prefix_tokens >= CACHE_MIN_TOKENS:
        digest = hashlib.sha256(json.dumps([model_name, prefix]).encode()).hexdigest()
        if state.remember_prefix(digest):
            read = prefix_tokens
        else:
            written = prefix_tokens
    output_tokens, _, truncated = plan_output(limit, reasoning=False)
    return Usage(input_tokens, output_tokens, cached_tokens=read, cache_write_tokens=written, truncated=truncated)


def anthropic_usage(usage: Usage, output_tokens: int) -> dict:
    # input_tokens excludes what the cache served or stored: the three add up to the whole prompt.
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_frame(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: ".encode() + dump_compact(event) + b"\n\n"


def anthropic_checked_body(body: Any) -> dict:
    body = require_object(body)
    find_model("anthropic", body.get("model"), kind="chat", endpoint="messages")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise MockApiError(400, "messages: Field required")
    return body


def anthropic_messages(body: Any, request_id: str, state: AiState, **_: Any) -> Reply:
    body = anthropic_checked_body(body)
    if body.get("max_tokens") is None:
        raise MockApiError(400, "max_tokens: Field required")
    usage = anthropic_measure(state, body, body["model"], read_limit(body, "max_tokens"))
    pieces = reply_pieces(usage.output_tokens)
    stop_reason = "max_tokens" if usage.truncated else "end_turn"
    message = {"id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": body["model"],
               "content": [{"type": "text", "text": "".join(pieces)}], "stop_reason": stop_reason,
               "stop_sequence": None, "usage": anthropic_usage(usage, usage.output_tokens)}
    if body.get("stream") is not True:
        return json_reply("anthropic", request_id, message)
    # message_start reports 1 output token; message_delta reports the cumulative totals, to overwrite.
    start = {**message, "content": [], "stop_reason": None, "usage": anthropic_usage(usage, 1)}
    final_usage = anthropic_usage(usage, usage.output_tokens)
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
          for piece in pieces),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
         "usage": {name: final_usage[name] for name in (
             "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}},
        {"type": "message_stop"},
    ]
    return sse_reply("anthropic", request_id, [anthropic_frame(event) for event in events])


def anthropic_count_tokens(body: Any, request_id: str, **_: Any) -> Reply:
    body = anthropic_checked_body(body)
    messages = anthropic_blocks(body)
    tokens = measure_input([text for text, _ in message] for message in messages)
    return json_reply("anthropic", request_id, {"input_tokens": tokens})


# ---------------------------------------------------------------- Gemini


def gemini_field(container: Any, camel: str, snake: str) -> Any:
    """Gemini's JSON accepts both spellings of a field; the SDK sends camelCase."""
    if not isinstance(container, dict):
        return None
    return container.get(camel, container.get(snake))


def gemini_texts(body: dict) -> list[list[str]]:
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise MockApiError(400, "* GenerateContentRequest.contents: contents is not specified")
    messages = [content_texts(content.get("parts")) if isinstance(content, dict) else [] for content in contents]
    system = gemini_field(body, "systemInstruction", "system_instruction")
    if system is not None:
        messages.insert(0, content_texts(system.get("parts") if isinstance(system, dict) else system))
    return messages


def gemini_measure(body: dict, model: ModelInfo) -> Usage:
    messages = gemini_texts(body)
    config = gemini_field(body, "generationConfig", "generation_config") or {}
    limit_name = "maxOutputTokens" if "maxOutputTokens" in config else "max_output_tokens"
    limit = read_limit(config, limit_name)
    thinking = gemini_field(config, "thinkingConfig", "thinking_config")
    budget = gemini_field(thinking, "thinkingBudget", "thinking_budget")
    output_tokens, reasoning_tokens, truncated = plan_output(
        limit, reasoning=model.reasoning, reasoning_max=budget if isinstance(budget, int) else None)
    return Usage(measure_input(messages), output_tokens, cached_tokens=cached_by_length(messages),
                 reasoning_tokens=reasoning_tokens, truncated=truncated)


def gemini_usage(usage: Usage, *, final: bool) -> dict:
    """usageMetadata; stream chunks before the last carry only the prompt side, as the real API's do."""
    details = [{"modality": "TEXT", "tokenCount": usage.input_tokens}]
    metadata: dict[str, Any] = {"promptTokenCount": usage.input_tokens}
    if final:
        metadata["candidatesTokenCount"] = usage.visible_tokens
    metadata["totalTokenCount"] = usage.input_tokens + (usage.output_tokens if final else 0)
    if usage.cached_tokens:
        metadata["cachedContentTokenCount"] = usage.cached_tokens
    metadata["promptTokensDetails"] = details
    if usage.cached_tokens:
        metadata["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached_tokens}]
    if final and usage.reasoning_tokens:
        metadata["thoughtsTokenCount"] = usage.reasoning_tokens
    return metadata


def gemini_generate(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    body = require_object(body)
    name, method = request.match_info["model"], request.match_info["method"]
    model = find_model("gemini", name, kind="chat", endpoint=method, version=request.match_info["version"])
    usage = gemini_measure(body, model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "MAX_TOKENS" if usage.truncated else "STOP"

    def response(text: str, *, final: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if final:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {"candidates": [candidate], "usageMetadata": gemini_usage(usage, final=final),
                "modelVersion": name, "responseId": request_id}

    if method == "generateContent":
        return json_reply("gemini", request_id, response("".join(pieces), final=True), indent=2)
    groups = [pieces[start:start + 2] for start in range(0, len(pieces), 2)] or [[]]  # two tokens per chunk
    chunks = [response("".join(group), final=number == len(groups) - 1) for number, group in enumerate(groups)]
    if request.query.get("alt") != "sse":
        # Without alt=sse the API streams one JSON array of the same responses.
        return sse_reply("gemini", request_id, [b"[" + b",\r\n".join(dump_compact(c) for c in chunks) + b"]"],
                         content_type="application/json; charset=UTF-8")
    # The real API ends each event with CRLF CRLF; SSE parsers must accept it.
    return sse_reply("gemini", request_id, [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks],
                     content_type="text/event-stream")


def gemini_count_tokens(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    body = require_object(body)
    find_model("gemini", request.match_info["model"], kind="chat", endpoint="countTokens",
               version=request.match_info["version"])
    request_body = gemini_field(body, "generateContentRequest", "generate_content_request")
    tokens = measure_input(gemini_texts(request_body if isinstance(request_body, dict) else body))
    return json_reply("gemini", request_id, {"totalTokens": tokens, "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": tokens}]}, indent=2)


def gemini_dispatch(body: Any, request_id: str, request: web.Request, **extra: Any) -> Reply:
    method = request.match_info["method"]
    if method in ("generateContent", "streamGenerateContent"):
        return gemini_generate(body, request_id, request=request, **extra)
    if method == "countTokens":
        return gemini_count_tokens(body, request_id, request=request, **extra)
    raise MockApiError(404, f"Method {method} is not supported by this mock.")


def unknown_path(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    raise MockApiError(404, f"Invalid URL ({request.method} {request.path})")


# ---------------------------------------------------------------- the request pipeline


Builder = Callable[..., Reply]


def lowercase_headers(request: web.Request) -> dict[str, str]:
    """Every received header, names lower-cased, repeated values joined by ", "."""
    joined: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def presented_key(provider: str, request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
    if provider == "openai":
        return bearer
    if provider == "anthropic":
        return request.headers.get("x-api-key") or bearer  # the current SDK sends only the Bearer form
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def authenticate(provider: str, request: web.Request, state: AiState) -> None:
    key = presented_key(provider, request)
    if key and state.accepts(key):
        if provider == "anthropic" and not request.headers.get("anthropic-version"):
            raise MockApiError(400, "anthropic-version: header is required")
        return
    if provider == "openai":
        if not key:
            raise MockApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        raise MockApiError(401, f"Incorrect API key provided: {key[:8]}****.", code="invalid_api_key")
    if provider == "anthropic":
        raise MockApiError(401, "x-api-key header is required" if not key else "invalid x-api-key")
    raise MockApiError(401, "API key not valid. Please pass a valid API key." if key else
                       "Method doesn't allow unregistered callers (callers without established identity). "
                       "Please use API Key or other form of API consumer identity to call this API.")


async def pause(request: web.Request, delay_s: float) -> bool:
    """Sleep, but stop early (returning False) once the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay_s
    while (remaining := deadline - loop.time()) > 0:
        if request.transport is None or request.transport.is_closing():
            return False
        await asyncio.sleep(min(remaining, DISCONNECT_POLL_S))
    return request.transport is not None and not request.transport.is_closing()


def reset_connection(request: web.Request) -> None:
    """Send a TCP RST: SO_LINGER with a zero timeout makes close() abort the connection."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def read_body(request: web.Request) -> tuple[bytes | None, Any, bool]:
    """(raw bytes, parsed JSON or None, parsed ok); a body over the app's size limit reads as None."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None, None, False
    if not raw:
        return raw, None, request.method == "GET"
    try:
        return raw, json.loads(raw), True
    except (UnicodeDecodeError, ValueError):
        return raw, None, False


def record(state: AiState, request: web.Request, provider: str, raw: bytes | None, body: Any) -> None:
    state.requests.append({
        "provider": provider, "method": request.method, "path": request.rel_url.raw_path,
        "query": request.rel_url.raw_query_string, "headers": lowercase_headers(request),
        "body": body, "body_bytes": None if raw is None else len(raw), "time": time.time(),
    })


async def early_fault(request: web.Request, fault: Fault | None) -> bool:
    """Apply a fault that strikes before any answer; False when the connection is gone."""
    if fault is None:
        return True
    if fault.mode == "500":
        raise MockApiError(500, "The server had an error while processing your request. Sorry about that!")
    if fault.mode == "429":
        raise MockApiError(429, "Rate limit reached for requests. Please try again later.",
                           code="rate_limit_exceeded", headers={"Retry-After": str(fault.retry_after_s)})
    if fault.mode == "timeout":
        return await pause(request, (fault.delay_ms or TIMEOUT_FAULT_MS_DEFAULT) / 1000)
    if fault.mode == "reset":
        reset_connection(request)
        return False
    return True


async def serve_ai(request: web.Request, provider: str, build: Builder) -> web.StreamResponse:
    state = request.app[AI_STATE_KEY]
    raw, body, parsed = await read_body(request)
    request_id = state.next_id()
    record(state, request, provider, raw, body)
    fault = state.take_fault(provider)
    try:
        if not await pause(request, state.latency_ms / 1000) or not await early_fault(request, fault):
            return web.Response(status=499)  # the connection is gone; aiohttp has nowhere to send this
        authenticate(provider, request, state)
        if raw is None:
            raise MockApiError(413, "Request body is too large.")
        if not parsed:
            raise MockApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                    "you aren't using your HTTP library correctly.)")
        reply = build(body, request_id, request=request, state=state)
    except MockApiError as error:
        reply = render_error(provider, error, request_id)
    return await deliver(request, reply, fault, state)


async def deliver(request: web.Request, reply: Reply, fault: Fault | None, state: AiState) -> web.StreamResponse:
    """Send a reply, cut or slowed as the fault says; stream frames go out one by one, each split in two."""
    mode = fault.mode if fault is not None and reply.status == 200 else "none"
    if not reply.stream and mode != "reset_mid_stream":
        if mode == "slow_stream" and not await pause(request, slow_delay_s(fault)):
            return web.Response(status=499)
        response = web.Response(body=reply.parts[0], status=reply.status, headers=reply.headers)
        response.headers["Content-Type"] = reply.content_type
        return response
    response = web.StreamResponse(status=reply.status, headers={**reply.headers, "Cache-Control": "no-cache"})
    response.headers["Content-Type"] = reply.content_type
    if reply.stream:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(reply.parts[0])
    await response.prepare(request)
    data = reply.parts if reply.stream else (reply.parts[0][: len(reply.parts[0]) // 2],)
    cut_at = max(1, len(data) // 2) if mode == "reset_mid_stream" else len(data)
    delay_s = slow_delay_s(fault) if mode == "slow_stream" else state.chunk_delay_ms / 1000
    try:
        for number, frame in enumerate(data[:cut_at]):
            if number and not await pause(request, delay_s):
                return response
            await write_split(response, frame, delay_s)
        if mode == "reset_mid_stream":
            await asyncio.sleep(0.05)  # let the partial stream reach the client before the cut
            assert request.transport is not None
            request.transport.abort()  # no terminating chunk: the client sees a broken stream
            return response
        await response.write_eof()
    except ConnectionError:
        pass  # the client left mid-stream; nothing more to do
    return response


async def write_split(response: web.StreamResponse, frame: bytes, delay_s: float) -> None:
    """Write a frame in two pieces, so readers must join events that straddle network reads."""
    middle = len(frame) // 2
    await response.write(frame[:middle])
    if delay_s:
        await asyncio.sleep(min(delay_s, 0.001))
    await response.write(frame[middle:])


def slow_delay_s(fault: Fault | None) -> float:
    return ((fault.delay_ms if fault and fault.delay_ms is not None else SLOW_STREAM_DELAY_MS_DEFAULT) / 1000)


def ai_handler(provider: str, build: Builder) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_ai(request, provider, build)
    return handle


# ---------------------------------------------------------------- controls under /_mock/ai


async def control_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object\n")
    return body


def bounded_integer(body: dict, name: str, *, default: int | None, maximum: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise web.HTTPBadRequest(text=f"{name} must be an integer from 0 to {maximum}\n")
    return value


def fault_json(fault: Fault | None) -> dict:
    if fault is None:
        return {"mode": "none", "count": 0, "provider": None}
    return {"mode": fault.mode, "count": fault.remaining, "provider": fault.provider, "delay_ms": fault.delay_ms,
            "retry_after_s": fault.retry_after_s}


async def set_fault(request: web.Request) -> web.Response:
    """POST {"mode", "count": 1, "provider": null, "delay_ms": null, "retry_after_s": 1}."""
    body = await control_body(request)
    mode, provider = body.get("mode"), body.get("provider")
    if mode not in FAULT_MODES:
        raise web.HTTPBadRequest(text=f"mode must be one of {', '.join(FAULT_MODES)}\n")
    if provider is not None and provider not in PROVIDERS:
        raise web.HTTPBadRequest(text=f"provider must be one of {', '.join(PROVIDERS)} or null\n")
    count = bounded_integer(body, "count", default=1, maximum=FAULT_COUNT_MAX)
    delay_ms = bounded_integer(body, "delay_ms", default=None, maximum=TIMEOUT_FAULT_MS_DEFAULT)
    retry_after_s = bounded_integer(body, "retry_after_s", default=RETRY_AFTER_S_DEFAULT, maximum=86_400)
    state = request.app[AI_STATE_KEY]
    state.fault = None if mode == "none" or not count else Fault(mode, count, provider, delay_ms, retry_after_s)
    return web.json_response(fault_json(state.fault))


async def get_fault(request: web.Request) -> web.Response:
    return web.json_response(fault_json(request.app[AI_STATE_KEY].fault))


async def set_latency(request: web.Request) -> web.Response:
    """POST {"ms": N, "chunk_ms": M}: N before every answer, M between stream frames (each optional)."""
    body = await control_body(request)
    state = request.app[AI_STATE_KEY]
    state.latency_ms = bounded_integer(body, "ms", default=state.latency_ms, maximum=LATENCY_MS_MAX)
    state.chunk_delay_ms = bounded_integer(body, "chunk_ms", default=state.chunk_delay_ms, maximum=LATENCY_MS_MAX)
    return web.json_response({"ms": state.latency_ms, "chunk_ms": state.chunk_delay_ms})


async def set_keys(request: web.Request) -> web.Response:
    """POST {"keys": [...]} accepts exactly those upstream keys; {"keys": null} restores the prefixes."""
    keys = (await control_body(request)).get("keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise web.HTTPBadRequest(text="keys must be a list of strings or null\n")
    request.app[AI_STATE_KEY].accepted_keys = None if keys is None else frozenset(keys)
    return web.json_response({"keys": keys, "prefixes": list(KEY_PREFIXES_DEFAULT) if keys is None else None})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[AI_STATE_KEY].requests))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[AI_STATE_KEY].requests.clear()
    return web.Response(status=204)


async def reset_state(request: web.Request) -> web.Response:
    request.app[AI_STATE_KEY].reset()
    return web.Response(status=204)


# ---------------------------------------------------------------- routes


def add_ai_routes(app: web.Application, state: AiState | None = None) -> AiState:
    """Serve the three provider APIs and their controls on `app`; returns the state they share."""
    app[AI_STATE_KEY] = state = state or AiState()
    routes: list[tuple[str, str, str, Builder]] = [
        ("POST", "/openai/v1/chat/completions", "openai", openai_chat),
        ("POST", "/openai/v1/completions", "openai", openai_completions),
        ("POST", "/openai/v1/embeddings", "openai", openai_embeddings),
        ("POST", "/openai/v1/responses", "openai", openai_responses),
        ("GET", "/openai/v1/models", "openai", openai_models),
        ("GET", "/openai/v1/models/{model_id}", "openai", openai_models),
        ("POST", "/anthropic/v1/messages", "anthropic", anthropic_messages),
        ("POST", "/anthropic/v1/messages/count_tokens", "anthropic", anthropic_count_tokens),
        ("POST", r"/gemini/{version:v1beta|v1}/models/{model:[^/:]+}:{method:[A-Za-z]+}", "gemini",
         gemini_dispatch),
    ]
    for method, path, provider, build in routes:
        app.router.add_route(method, path, ai_handler(provider, build))
    for provider in PROVIDERS:  # anything else under a provider's prefix: its own 404
        app.router.add_route("*", f"/{provider}/{{tail:.*}}", ai_handler(provider, unknown_path))
    app.router.add_post("/_mock/ai/faults", set_fault)
    app.router.add_get("/_mock/ai/faults", get_fault)
    app.router.add_post("/_mock/ai/latency", set_latency)
    app.router.add_post("/_mock/ai/keys", set_keys)
    app.router.add_get("/_mock/ai/requests", list_requests)
    app.router.add_delete("/_mock/ai/requests", clear_requests)
    app.router.add_post("/_mock/ai/reset", reset_state)
    return state
