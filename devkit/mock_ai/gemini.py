"""The mock's Gemini API: generateContent, streamGenerateContent (JSON array or SSE) and countTokens."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from devkit.mock_ai.models import ModelInfo
from devkit.mock_ai.replies import (Builder, MockApiError, Reply, dump_compact, find_model, json_reply, read_limit,
                                    require_object, sse_reply)
from devkit.mock_ai.usage import Usage, cached_by_length, content_texts, measure_input, plan_output, reply_pieces


def field_value(container: Any, camel: str, snake: str) -> Any:
    """Gemini's JSON accepts both spellings of a field; the SDK sends camelCase."""
    if not isinstance(container, dict):
        return None
    return container.get(camel, container.get(snake))


def prompt_texts(body: dict) -> list[list[str]]:
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise MockApiError(400, "* GenerateContentRequest.contents: contents is not specified")
    messages = [content_texts(content.get("parts")) if isinstance(content, dict) else [] for content in contents]
    system = field_value(body, "systemInstruction", "system_instruction")
    if system is not None:
        messages.insert(0, content_texts(system.get("parts") if isinstance(system, dict) else system))
    return messages


def measure(body: dict, model: ModelInfo) -> Usage:
    messages = prompt_texts(body)
    config = field_value(body, "generationConfig", "generation_config") or {}
    limit_name = "maxOutputTokens" if "maxOutputTokens" in config else "max_output_tokens"
    limit = read_limit(config, limit_name)
    thinking = field_value(config, "thinkingConfig", "thinking_config")
    budget = field_value(thinking, "thinkingBudget", "thinking_budget")
    output_tokens, reasoning_tokens, truncated = plan_output(
        limit, reasoning=model.reasoning, reasoning_max=budget if isinstance(budget, int) else None)
    return Usage(measure_input(messages), output_tokens, cached_tokens=cached_by_length(messages),
                 reasoning_tokens=reasoning_tokens, truncated=truncated)


def usage_metadata(usage: Usage, *, final: bool) -> dict:
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


def answer_generate(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    body = require_object(body)
    name, method = request.match_info["model"], request.match_info["method"]
    model = find_model("gemini", name, kind="chat", endpoint=method, version=request.match_info["version"])
    usage = measure(body, model)
    pieces = reply_pieces(usage.visible_tokens)
    finish = "MAX_TOKENS" if usage.truncated else "STOP"

    def response(text: str, *, final: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if final:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {"candidates": [candidate], "usageMetadata": usage_metadata(usage, final=final),
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


def answer_count_tokens(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    body = require_object(body)
    find_model("gemini", request.match_info["model"], kind="chat", endpoint="countTokens",
               version=request.match_info["version"])
    request_body = field_value(body, "generateContentRequest", "generate_content_request")
    tokens = measure_input(prompt_texts(request_body if isinstance(request_body, dict) else body))
    return json_reply("gemini", request_id, {"totalTokens": tokens, "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": tokens}]}, indent=2)


def dispatch(body: Any, request_id: str, request: web.Request, **extra: Any) -> Reply:
    method = request.match_info["method"]
    if method in ("generateContent", "streamGenerateContent"):
        return answer_generate(body, request_id, request=request, **extra)
    if method == "countTokens":
        return answer_count_tokens(body, request_id, request=request, **extra)
    raise MockApiError(404, f"Method {method} is not supported by this mock.")



# (method, path, builder): one route for every model and method, as the API's paths carry both.
ROUTES: tuple[tuple[str, str, Builder], ...] = (
    ("POST", r"/gemini/{version:v1beta|v1}/models/{model:[^/:]+}:{method:[A-Za-z]+}", dispatch),
)
