"""The mock's OpenAI API: chat completions, legacy completions, embeddings, models and responses."""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

from aiohttp import web

from devkit.mock_ai.models import MODEL_CREATED_S, OPENAI_MODELS, ModelInfo
from devkit.mock_ai.replies import (Builder, MockApiError, Reply, dump_compact, find_model, json_reply, read_limit,
                                    require_object, sse_reply)
from devkit.mock_ai.usage import (CHARS_PER_TOKEN, Usage, cached_by_length, content_texts, embedding_vector,
                                  measure_input, plan_output, reply_pieces, text_tokens)

RESPONSES_MAX_OUTPUT_TOKENS_MIN = 16  # the Responses API refuses smaller limits


def usage_fields(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage); stream_options without stream is refused, as the real API does."""
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise MockApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options", code="invalid_value")
    return stream, stream and isinstance(options, dict) and options.get("include_usage") is True


def measure(messages: list[list[str]], limit: int | None, model: ModelInfo) -> Usage:
    output_tokens, reasoning_tokens, truncated = plan_output(limit, reasoning=model.reasoning)
    return Usage(measure_input(messages), output_tokens, cached_tokens=cached_by_length(messages),
                 reasoning_tokens=reasoning_tokens, truncated=truncated)


def frame(payload: dict) -> bytes:
    return b"data: " + dump_compact(payload) + b"\n\n"


def answer_chat(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="chat/completions")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MockApiError(400, "'messages' must be a non-empty array.", param="messages")
    if model.reasoning and body.get("max_tokens") is not None:
        raise MockApiError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                "Use 'max_completion_tokens' instead.", param="max_tokens",
                           code="unsupported_parameter")
    stream, include_usage = stream_flags(body)
    limit = read_limit(body, "max_completion_tokens", "max_tokens")
    texts = [content_texts(message.get("content")) if isinstance(message, dict) else [] for message in messages]
    usage = measure(texts, limit, model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "length" if usage.truncated else "stop"
    head = {"id": f"chatcmpl-{request_id}", "created": int(time.time()), "model": body["model"],
            "service_tier": "default", "system_fingerprint": "fp_mock"}
    if not stream:
        message = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
        return json_reply("openai", request_id, {
            **head, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage_fields(usage)})
    head = {**head, "object": "chat.completion.chunk"}
    tail = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return frame({**head, "choices": [choice], **tail})

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": piece}) for piece in pieces]
    frames.append(chunk({}, finish))
    if include_usage:
        frames.append(frame({**head, "choices": [], "usage": usage_fields(usage)}))
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


def answer_completions(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="completions")
    stream, include_usage = stream_flags(body)
    usage = measure(prompt_texts(body.get("prompt")), read_limit(body, "max_tokens"), model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "length" if usage.truncated else "stop"
    head = {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_mock"}
    if not stream:
        choice = {"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}
        return json_reply("openai", request_id, {**head, "choices": [choice], "usage": usage_fields(usage)})
    tail = {"usage": None} if include_usage else {}
    frames = [frame({**head, "choices": [{"text": piece, "index": 0, "logprobs": None,
                                          "finish_reason": None}], **tail}) for piece in pieces]
    frames.append(frame({**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                              "finish_reason": finish}], **tail}))
    if include_usage:
        frames.append(frame({**head, "choices": [], "usage": usage_fields(usage)}))
    frames.append(b"data: [DONE]\n\n")
    return sse_reply("openai", request_id, frames)


def answer_embeddings(body: Any, request_id: str, **_: Any) -> Reply:
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


def model_entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": MODEL_CREATED_S, "owned_by": "system"}


def answer_models(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    name = request.match_info.get("model_id")
    if name is None:
        return json_reply("openai", request_id, {"object": "list",
                                                 "data": [model_entry(model) for model in OPENAI_MODELS]})
    if name not in OPENAI_MODELS:
        raise MockApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    return json_reply("openai", request_id, model_entry(name))


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


def answer_responses(body: Any, request_id: str, **_: Any) -> Reply:
    body = require_object(body)
    model = find_model("openai", body.get("model"), kind="chat", endpoint="responses")
    limit = read_limit(body, "max_output_tokens", minimum=RESPONSES_MAX_OUTPUT_TOKENS_MIN)
    usage = measure(responses_input_texts(body), limit, model)
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


# (method, path, builder), in the order they are routed.
ROUTES: tuple[tuple[str, str, Builder], ...] = (
    ("POST", "/openai/v1/chat/completions", answer_chat),
    ("POST", "/openai/v1/completions", answer_completions),
    ("POST", "/openai/v1/embeddings", answer_embeddings),
    ("POST", "/openai/v1/responses", answer_responses),
    ("GET", "/openai/v1/models", answer_models),
    ("GET", "/openai/v1/models/{model_id}", answer_models),
)
