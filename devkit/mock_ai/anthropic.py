"""The mock's Anthropic API: messages (with its prompt cache) and token counting."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from devkit.mock_ai.replies import (Builder, MockApiError, Reply, dump_compact, find_model, json_reply, read_limit,
                                    require_object, sse_reply)
from devkit.mock_ai.state import AiState
from devkit.mock_ai.usage import CACHE_MIN_TOKENS, Usage, content_texts, measure_input, plan_output, reply_pieces, \
    text_tokens


def blocks_by_message(body: dict) -> list[list[tuple[str, bool]]]:
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


def measure(state: AiState, body: dict, model_name: str, limit: int | None) -> Usage:
    messages = blocks_by_message(body)
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


def usage_fields(usage: Usage, output_tokens: int) -> dict:
    # input_tokens excludes what the cache served or stored: the three add up to the whole prompt.
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def frame(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: ".encode() + dump_compact(event) + b"\n\n"


def checked_body(body: Any) -> dict:
    body = require_object(body)
    find_model("anthropic", body.get("model"), kind="chat", endpoint="messages")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise MockApiError(400, "messages: Field required")
    return body


def answer_messages(body: Any, request_id: str, state: AiState, **_: Any) -> Reply:
    body = checked_body(body)
    if body.get("max_tokens") is None:
        raise MockApiError(400, "max_tokens: Field required")
    usage = measure(state, body, body["model"], read_limit(body, "max_tokens"))
    pieces = reply_pieces(usage.output_tokens)
    stop_reason = "max_tokens" if usage.truncated else "end_turn"
    message = {"id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": body["model"],
               "content": [{"type": "text", "text": "".join(pieces)}], "stop_reason": stop_reason,
               "stop_sequence": None, "usage": usage_fields(usage, usage.output_tokens)}
    if body.get("stream") is not True:
        return json_reply("anthropic", request_id, message)
    # message_start reports 1 output token; message_delta reports the cumulative totals, to overwrite.
    start = {**message, "content": [], "stop_reason": None, "usage": usage_fields(usage, 1)}
    final_usage = usage_fields(usage, usage.output_tokens)
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
    return sse_reply("anthropic", request_id, [frame(event) for event in events])


def answer_count_tokens(body: Any, request_id: str, **_: Any) -> Reply:
    body = checked_body(body)
    messages = blocks_by_message(body)
    tokens = measure_input([text for text, _ in message] for message in messages)
    return json_reply("anthropic", request_id, {"input_tokens": tokens})


# (method, path, builder), in the order they are routed.
ROUTES: tuple[tuple[str, str, Builder], ...] = (
    ("POST", "/anthropic/v1/messages", answer_messages),
    ("POST", "/anthropic/v1/messages/count_tokens", answer_count_tokens),
)
