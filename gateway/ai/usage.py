"""Token usage normalized for billing, read from OpenAI, Anthropic and Gemini JSON and SSE streams.

Every provider counts differently; `Usage` is what the price table needs:
- `input_tokens`: prompt tokens billed at the input price (cache misses, Anthropic cache writes,
  Gemini tool-use prompt tokens);
- `cached_input_tokens`: prompt tokens billed at the cached-input price (cache reads/hits);
- `output_tokens`: everything billed at the output price, reasoning/thinking included, counted once.

Upstream JSON is untrusted: a missing count is 0; a count that is not a plain non-negative int
(bool, float, string, negative, absurdly large) is treated as missing; nothing here raises on upstream
garbage. A function returns None when the object holds no usage at all, so the caller can tell
"the upstream reported zero" from "the upstream reported nothing".
"""

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.ai.sse import SseEvent

# No call comes near a trillion tokens; a larger count is garbage, not a bill.
TOKENS_MAX = 10**12


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, split by the price each is billed at."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        for value in (self.input_tokens, self.cached_input_tokens, self.output_tokens):
            if type(value) is not int or value < 0:
                raise ValueError(f"token counts are non-negative ints, got {value!r}")

    @property
    def total(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.output_tokens


def _count(container: Any, key: str) -> int | None:
    """`container[key]` when it is a sane token count, else None (absent)."""
    if not isinstance(container, dict):
        return None
    value = container.get(key)
    if type(value) is int and 0 <= value <= TOKENS_MAX:
        return value
    return None


def _split_prompt(prompt_tokens: int, cached_tokens: int, output_tokens: int) -> Usage:
    """Usage for providers whose prompt count includes the cached part (OpenAI, Gemini)."""
    cached_tokens = min(cached_tokens, prompt_tokens)  # a cache larger than the prompt is garbage
    return Usage(prompt_tokens - cached_tokens, cached_tokens, output_tokens)


def from_openai(usage_obj: Any) -> Usage | None:
    """OpenAI `usage`: chat/completions and embeddings (`prompt_tokens`…) or Responses (`input_tokens`…).

    `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; `completion_tokens` already
    includes `completion_tokens_details.reasoning_tokens` (so reasoning is not added again). Audio
    tokens are billed as text tokens.
    """
    prompt = _count(usage_obj, "prompt_tokens")
    completion = _count(usage_obj, "completion_tokens")
    if prompt is not None or completion is not None:
        cached = _count(usage_obj.get("prompt_tokens_details"), "cached_tokens") or 0
        return _split_prompt(prompt or 0, cached, completion or 0)
    input_tokens = _count(usage_obj, "input_tokens")
    output_tokens = _count(usage_obj, "output_tokens")
    if input_tokens is None and output_tokens is None:
        return None
    cached = _count(usage_obj.get("input_tokens_details"), "cached_tokens") or 0
    return _split_prompt(input_tokens or 0, cached, output_tokens or 0)


_ANTHROPIC_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def _anthropic_counts(usage_obj: Any) -> dict[str, int]:
    """The sane Anthropic count fields present in `usage_obj` (null and garbage left out)."""
    counts = {}
    for field in _ANTHROPIC_FIELDS:
        value = _count(usage_obj, field)
        if value is not None:
            counts[field] = value
    return counts


def _anthropic_usage(counts: dict[str, int]) -> Usage:
    # Anthropic's input_tokens excludes both cache reads and cache writes. Cache writes are charged
    # by Anthropic at 1.25x (5 min) or 2x (1 h) the base input price; the price table has no column
    # for them, so they are billed at the plain input price — a choice, kept simple and visible here.
    return Usage(
        input_tokens=counts.get("input_tokens", 0) + counts.get("cache_creation_input_tokens", 0),
        cached_input_tokens=counts.get("cache_read_input_tokens", 0),
        output_tokens=counts.get("output_tokens", 0),  # thinking tokens are already inside
    )


def from_anthropic(usage_obj: Any) -> Usage | None:
    """Anthropic `usage` (Messages JSON, `message_start.message.usage`, `message_delta.usage`)."""
    counts = _anthropic_counts(usage_obj)
    return _anthropic_usage(counts) if counts else None


_GEMINI_FIELDS = ("promptTokenCount", "cachedContentTokenCount", "candidatesTokenCount",
                  "thoughtsTokenCount", "toolUsePromptTokenCount")


def from_gemini(usage_metadata: Any) -> Usage | None:
    """Gemini `usageMetadata`. `promptTokenCount` includes `cachedContentTokenCount`;
    `candidatesTokenCount` excludes `thoughtsTokenCount`; `toolUsePromptTokenCount` is separate
    prompt input. `totalTokenCount` is never used: it is a sum the others already give.
    """
    counts = {field: _count(usage_metadata, field) for field in _GEMINI_FIELDS}
    if all(value is None for value in counts.values()):
        return None
    split = _split_prompt(counts["promptTokenCount"] or 0, counts["cachedContentTokenCount"] or 0,
                          (counts["candidatesTokenCount"] or 0) + (counts["thoughtsTokenCount"] or 0))
    tool_use = counts["toolUsePromptTokenCount"] or 0
    return Usage(split.input_tokens + tool_use, split.cached_input_tokens, split.output_tokens)


def _json_object(data: str) -> dict | None:
    """The event's data as a JSON object, or None (`[DONE]`, garbage, arrays, scalars)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _text_length(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _kind(payload: dict) -> str | None:
    """The payload's `type` when it is a string (a list there would not even hash)."""
    kind = payload.get("type")
    return kind if isinstance(kind, str) else None


class _StreamMeter:
    """Reads a provider's stream events in order; subclasses know where the usage is.

    `usage` is what the upstream reported (None while it reported nothing); `finished` says the
    upstream signalled the end of its response, so `usage` is final; `streamed_output_chars` counts
    the characters (code points) of generated text deltas seen, for charging a stream cut early;
    `started` says the upstream sent an event other than an error, i.e. the call ran.
    """

    __slots__ = ("usage", "finished", "streamed_output_chars", "started")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finished = False
        self.streamed_output_chars = 0
        self.started = False

    def feed(self, event: SseEvent) -> dict | None:
        """Meter the event; its data as a JSON object (parsed once, for the relay's own checks), or None."""
        if not event.dispatched:
            return None
        payload = _json_object(event.data)
        if payload is not None:
            if not self.started and "error" not in payload and _kind(payload) != "error":
                self.started = True
            self._observe(payload)
        return payload

    def _observe(self, payload: dict) -> None:
        raise NotImplementedError


class OpenAIChatMeter(_StreamMeter):
    """Chat completions (and legacy completions) chunks; usage arrives in the `include_usage` chunk."""

    __slots__ = ()

    def feed(self, event: SseEvent) -> dict | None:
        if event.dispatched and event.data.strip() == "[DONE]":
            self.finished = True
            return None
        return super().feed(event)

    def _observe(self, chunk: dict) -> None:
        usage = from_openai(chunk.get("usage"))
        if usage is not None:
            self.usage = usage  # the last non-null usage wins
            if chunk.get("choices") == []:
                self.finished = True  # the include_usage chunk is the last before [DONE]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                self.streamed_output_chars += _text_length(choice.get("text")) + _delta_chars(choice.get("delta"))


def _delta_chars(delta: Any) -> int:
    if not isinstance(delta, dict):
        return 0
    chars = _text_length(delta.get("content")) + _text_length(delta.get("refusal"))
    tool_calls = delta.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            chars += _text_length(call["function"].get("arguments"))
    if isinstance(delta.get("function_call"), dict):
        chars += _text_length(delta["function_call"].get("arguments"))
    return chars


_RESPONSES_TEXT_DELTAS = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
    "response.reasoning_text.delta", "response.reasoning_summary_text.delta",
    "response.custom_tool_call_input.delta",
})
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class OpenAIResponsesMeter(_StreamMeter):
    """Responses API events; usage is in the terminal event's `response.usage`."""

    __slots__ = ()

    def _observe(self, event: dict) -> None:
        kind = _kind(event)
        if kind in _RESPONSES_TEXT_DELTAS:
            self.streamed_output_chars += _text_length(event.get("delta"))
        elif kind in _RESPONSES_TERMINAL:
            self.finished = True
            response = event.get("response")
            usage = from_openai(response.get("usage")) if isinstance(response, dict) else None
            if usage is not None:
                self.usage = usage


_ANTHROPIC_DELTA_TEXT_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class AnthropicMeter(_StreamMeter):
    """Messages stream: `message_start` then `message_delta`, whose counts are cumulative totals.

    Every count present in an event overwrites the one before it — never added — so the result is
    the last value the upstream reported for each field.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, int] = {}

    def _observe(self, event: dict) -> None:
        kind = _kind(event)
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict):
                field = _ANTHROPIC_DELTA_TEXT_FIELDS.get(_kind(delta) or "")
                self.streamed_output_chars += _text_length(delta.get(field)) if field else 0
            return
        if kind == "message_start":
            message = event.get("message")
            counts = _anthropic_counts(message.get("usage")) if isinstance(message, dict) else {}
        elif kind == "message_delta":
            counts = _anthropic_counts(event.get("usage"))
            self.finished = True  # carries the stop_reason and the final usage
        elif kind == "message_stop":
            self.finished = True
            return
        else:
            return
        if counts:
            self._counts.update(counts)
            self.usage = _anthropic_usage(self._counts)


class GeminiMeter(_StreamMeter):
    """streamGenerateContent?alt=sse: each event is a whole GenerateContentResponse.

    Gemini repeats `usageMetadata` in many chunks, each a running total: the last one seen wins.
    """

    __slots__ = ("_writing",)

    def __init__(self) -> None:
        super().__init__()
        self._writing: set[object] = set()  # indexes of candidates seen without a finishReason

    def _observe(self, response: dict) -> None:
        usage = from_gemini(response.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidates = response.get("candidates")
        for candidate in candidates if isinstance(candidates, list) else ():
            if not isinstance(candidate, dict):
                continue
            # With candidateCount > 1 the candidates finish one by one: the response (and its
            # usage) is final only once every candidate seen so far has finished.
            index = candidate.get("index", 0)
            index = index if isinstance(index, int) else repr(index)
            if isinstance(candidate.get("finishReason"), str):
                self._writing.discard(index)
                self.finished = not self._writing
            else:
                self._writing.add(index)
                self.finished = False
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else ():
                if isinstance(part, dict):
                    self.streamed_output_chars += _text_length(part.get("text"))  # thoughts included


def _json_length(value: Any) -> int:
    """Characters of a generated structured value (tool input, function arguments as an object)."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(orjson.dumps(value)) if value is not None else 0
    except TypeError:
        return 0


def _items(container: Any, key: str) -> list:
    value = container.get(key) if isinstance(container, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _responses_item_chars(item: dict) -> int:
    kind = _kind(item)
    if kind == "message":
        return sum(_text_length(part.get("text")) + _text_length(part.get("refusal"))
                   for part in _items(item, "content"))
    if kind == "reasoning":
        return sum(_text_length(part.get("text")) for part in _items(item, "summary") + _items(item, "content"))
    return _text_length(item.get("arguments")) + _text_length(item.get("input"))


def answer_text_chars(kind: str, answer: dict) -> int:
    """Characters of text a whole (non-stream) answer generated, for an estimate when it carries no
    usage: chat and completions choices, Responses output items, Anthropic content blocks, Gemini
    candidates' parts (thoughts included). Embeddings generate none."""
    if kind in ("chat", "completions"):
        return sum(_text_length(choice.get("text")) + _delta_chars(choice.get("message"))
                   for choice in _items(answer, "choices"))
    if kind == "responses":
        return sum(_responses_item_chars(item) for item in _items(answer, "output"))
    if kind == "messages":
        return sum(_text_length(block.get("text")) + _text_length(block.get("thinking")) + _json_length(
            block.get("input")) for block in _items(answer, "content"))
    if kind == "generate":
        return sum(_text_length(part.get("text")) + _json_length(part.get("functionCall"))
                   for candidate in _items(answer, "candidates")
                   for part in _items(candidate.get("content"), "parts"))
    return 0


def is_openai_usage_only_chunk(event: SseEvent) -> bool:
    """True for the extra `include_usage` chunk: `"choices": []` with a non-null `usage`."""
    return event.dispatched and is_usage_only(_json_object(event.data))


def is_usage_only(chunk: dict | None) -> bool:
    """True for a parsed `include_usage` chunk (the event's data as the meter's feed returned it)."""
    return chunk is not None and chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def with_openai_stream_usage(body: dict) -> tuple[dict, bool]:
    """(body to send upstream, whether the client asked for `include_usage` itself).

    A streaming chat/completions body gets `stream_options.include_usage = true` so the stream can
    be metered; when the client had not asked, the gateway drops that chunk before the client sees
    it. Non-stream bodies are returned as they are. The input is never mutated.
    """
    if body.get("stream") is not True:
        return body, False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, True
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return {**body, "stream_options": options}, False
