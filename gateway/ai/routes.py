"""What an AI request is: provider, model, upstream path, stream or not, and its output bound.

Pure functions of the request line and the parsed body; the stages (reservation, forwarding,
relay, settlement) do the I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.errors import BadRequest, NotFound

# Billed OpenAI endpoints and where their output bound lives.
OPENAI_BILLED = {"/chat/completions": ("max_completion_tokens", "max_tokens"), "/completions": ("max_tokens",),
                 "/responses": ("max_output_tokens",), "/embeddings": ()}
# The legacy completions API writes 16 tokens when max_tokens is absent.
OPENAI_COMPLETIONS_DEFAULT_MAX = 16
# The only upstream paths a route may forward (after decoding). A path segment starts with a letter
# or digit, so no id can be a dot segment; nothing else of the client's path goes upstream (C1).
OPENAI_MODELS_PATH = re.compile(r"^/models(/[A-Za-z0-9][A-Za-z0-9._:-]{0,199})?$")
GEMINI_PATH = re.compile(
    r"^/(v1beta|v1)/models/([A-Za-z0-9][A-Za-z0-9._-]{0,199}):(generateContent|streamGenerateContent|countTokens)$")
# Encoded slashes, backslashes and encoded dots have no place in a provider path: they are how a path
# smuggles a segment past a check on the decoded form. Checked on the raw request line.
UNSAFE_RAW_PATH = re.compile(r"%2[eEfF]|%5[cC]|\\")
MODEL = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")
# Media and files a prompt can carry or reference, whose tokens its bytes do not bound (a URL or file
# id names a whole PDF; a small PNG can be a large image): each such part may cost up to
# MEDIA_TOKENS_MAX tokens (decision 0011). A part is a JSON object whose `type` is one of these
# (OpenAI chat and Responses, Anthropic), or that has one of the Gemini part keys.
MEDIA_PART_TYPES = frozenset({"image_url", "input_image", "input_audio", "file", "input_file", "image", "document",
                              "container_upload"})
MEDIA_PART_KEYS = ("inlineData", "inline_data", "fileData", "file_data")
# Only a body whose compact JSON holds one of these is walked for media parts (most prompts are text):
# one regex search over the bytes instead of a substring search per hint.
MEDIA_HINTS = (*(b'"type":"' + kind.encode() + b'"' for kind in sorted(MEDIA_PART_TYPES)),
               *(b'"' + key.encode() + b'":' for key in MEDIA_PART_KEYS))
MEDIA_HINT = re.compile(b"|".join(re.escape(hint) for hint in MEDIA_HINTS))
MEDIA_TOKENS_MAX = 100_000
# Inputs the body does not carry (stored conversations, prompts, caches) and server-side tools.
OPENAI_UNBOUNDED = ("previous_response_id", "conversation", "background", "web_search_options")
OPENAI_SERVER_TOOLS = ("web_search", "file_search", "code_interpreter", "image_generation", "computer_use",
                       "mcp", "local_shell")
ANTHROPIC_UNBOUNDED = ("mcp_servers", "container")
ANTHROPIC_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution")
GEMINI_UNBOUNDED = ("cachedContent", "cached_content")
GEMINI_SERVER_TOOLS = ("googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval",
                       "codeExecution", "code_execution", "urlContext", "url_context")


@dataclass(frozen=True, slots=True)
class CallSpec:
    provider: str
    model: str
    upstream_path: str       # appended to the provider's base URL
    stream: bool
    billed: bool             # false for listing models and counting tokens
    output_bound: int | None  # the most output tokens the request allows; None = the model's ceiling
    kind: str                # chat | completions | responses | embeddings | messages | generate | free
    choices: int = 1         # answers the call may write (n × prompts, candidateCount): without an
                             # output bound, each may reach the model's ceiling
    reasoning: bool = False  # the model may think in tokens the stream does not show (decision 0011)


# Models that reason before they answer unless told not to; the request fields below turn it on for others.
OPENAI_REASONING_MODEL = re.compile(r"^(ft:)?(o\d|gpt-5)")
GEMINI_REASONING_MODEL = re.compile(r"(2\.5|thinking|gemini-3)")


def _openai_reasons(model: str, body: dict[str, Any]) -> bool:
    return bool(OPENAI_REASONING_MODEL.match(model)) or body.get("reasoning_effort") is not None \
        or body.get("reasoning") is not None


def _anthropic_reasons(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") != "disabled"


def _gemini_reasons(model: str, thinking: Any) -> bool:
    budget = thinking.get("thinkingBudget", thinking.get("thinking_budget")) if isinstance(thinking, dict) else None
    if budget == 0:
        return False
    return bool(GEMINI_REASONING_MODEL.search(model)) or budget is not None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not MODEL.match(model):
        raise BadRequest("model: a model name is required", code="invalid_model")
    return model


def _bound(body: dict[str, Any], *names: str) -> int | None:
    """The largest of the named limits present (an upstream may honour either spelling)."""
    found = None
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadRequest(f"{name} must be a non-negative integer", code="invalid_field")
        found = value if found is None else max(found, value)
    return found


def _refuse_unbounded(body: dict[str, Any], fields: tuple[str, ...], tool_types: tuple[str, ...],
                      tool_keys: tuple[str, ...] = ()) -> None:
    """Features whose input (or fees) the body cannot bound — stored conversations, cached
    contents, server-side tools — would let a call cost more than any hold: refused (0011)."""
    for name in fields:
        if body.get(name) not in (None, False):
            raise BadRequest(f"{name} is not supported through this gateway", code="unsupported_parameter")
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", ""))
        if kind.startswith(tool_types) or any(key in tool for key in tool_keys):
            raise BadRequest(f"server-side tool {kind or next(k for k in tool_keys if k in tool)!r} is not "
                             "supported through this gateway", code="unsupported_parameter")


def _choices(body: dict[str, Any], name: str = "n") -> int:
    value = body.get(name, 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
        raise BadRequest(f"{name} must be an integer from 1 to 128", code="invalid_field")
    return value


def _prompts(prompt: Any) -> int:
    """Legacy completions: a batch of prompts (strings or token-id lists) gets n answers per prompt."""
    if isinstance(prompt, list) and prompt and not all(isinstance(item, int) for item in prompt):
        return len(prompt)
    return 1


def check_path(raw_path: str, tail: str) -> None:
    """Refuse a path that could name another upstream resource than the route it matched: dot
    segments, encoded slashes or dots, backslashes (raw or decoded), or a `%` left after decoding."""
    raw = raw_path.partition("?")[0]
    segments = tail.split("/")
    if (UNSAFE_RAW_PATH.search(raw) or "\\" in tail or "%" in tail or "." in segments or ".." in segments):
        raise BadRequest("the path must not contain dot segments, encoded slashes or dots, or backslashes",
                         code="invalid_path")


def openai(tail: str, method: str, body: dict[str, Any] | None) -> CallSpec:
    path = "/" + tail
    if method == "GET" and OPENAI_MODELS_PATH.match(path):
        return CallSpec("openai", "", path, False, False, 0, "free")
    if path not in OPENAI_BILLED or method != "POST" or body is None:
        raise NotFound(f"no OpenAI route {method} {path}", code="unknown_route")
    model = _model(body)
    stream = body.get("stream") is True
    _refuse_unbounded(body, OPENAI_UNBOUNDED, OPENAI_SERVER_TOOLS)
    if path == "/responses" and isinstance(body.get("prompt"), dict):  # a stored prompt template
        raise BadRequest("prompt is not supported through this gateway", code="unsupported_parameter")
    if path == "/embeddings":
        return CallSpec("openai", model, path, False, True, 0, "embeddings")
    bound = _bound(body, *OPENAI_BILLED[path])
    if path == "/completions":
        bound = OPENAI_COMPLETIONS_DEFAULT_MAX if bound is None else bound
        choices = max(_choices(body), _choices(body, "best_of")) * _prompts(body.get("prompt"))
    else:
        choices = _choices(body) if path == "/chat/completions" else 1
    if bound is not None:
        bound *= choices
    kind = {"/chat/completions": "chat", "/completions": "completions", "/responses": "responses"}[path]
    return CallSpec("openai", model, path, stream, True, bound, kind, choices, _openai_reasons(model, body))


def anthropic(tail: str, method: str, body: dict[str, Any] | None) -> CallSpec:
    path = "/" + tail
    if method != "POST" or body is None or path not in ("/v1/messages", "/v1/messages/count_tokens"):
        raise NotFound(f"no Anthropic route {method} {path}", code="unknown_route")
    model = _model(body)
    if path.endswith("count_tokens"):
        return CallSpec("anthropic", model, path, False, False, 0, "free")
    _refuse_unbounded(body, ANTHROPIC_UNBOUNDED, ANTHROPIC_SERVER_TOOLS)
    bound = _bound(body, "max_tokens")
    if bound is None:
        raise BadRequest("max_tokens: Field required", code="invalid_field")
    return CallSpec("anthropic", model, path, body.get("stream") is True, True, bound, "messages", 1,
                    _anthropic_reasons(body))


def gemini(tail: str, method: str, body: dict[str, Any] | None, alt: str | None) -> CallSpec:
    match = GEMINI_PATH.match("/" + tail)
    if match is None or method != "POST" or body is None:
        raise NotFound(f"no Gemini route {method} /{tail}", code="unknown_route")
    version, model, action = match.groups()
    path = f"/{version}/models/{model}:{action}"
    if action == "countTokens":
        return CallSpec("gemini", model, path, False, False, 0, "free")
    _refuse_unbounded(body, GEMINI_UNBOUNDED, (), GEMINI_SERVER_TOOLS)
    config = body.get("generationConfig", body.get("generation_config")) or {}
    if not isinstance(config, dict):
        raise BadRequest("generationConfig must be an object", code="invalid_field")
    bound = _bound(config, "maxOutputTokens", "max_output_tokens")
    candidates = _choices(config, "candidateCount")
    thinking = config.get("thinkingConfig", config.get("thinking_config")) or {}
    budget = None
    if isinstance(thinking, dict):
        if thinking.get("thinkingBudget", thinking.get("thinking_budget")) == -1:
            budget = None  # dynamic thinking (-1): bounded by maxOutputTokens or the model's ceiling
        else:
            budget = _bound(thinking, "thinkingBudget", "thinking_budget")
    if bound is not None:
        bound = bound * candidates + (budget or 0)
    stream = action == "streamGenerateContent"
    if stream and alt != "sse":
        raise BadRequest("streamGenerateContent is served as server-sent events: add ?alt=sse",
                         code="invalid_field")
    return CallSpec("gemini", model, path, stream, True, bound, "generate", candidates,
                    _gemini_reasons(model, thinking))


def media_references(body: dict | None, canonical: bytes) -> int:
    """How many media or file parts the body carries or references (MEDIA_PART_TYPES / _KEYS).

    `canonical` is the body as compact JSON: spacing or \\u-escapes in the client's bytes cannot
    hide a part from the quick check, and the walk reads the parsed body itself. A part is counted
    once and not entered (an Anthropic document's `source` is not a second part)."""
    if body is None or MEDIA_HINT.search(canonical) is None:
        return 0
    count, pending = 0, [body]
    while pending:  # iterative: a body may nest deeper than Python's recursion limit
        node = pending.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if (isinstance(kind, str) and kind in MEDIA_PART_TYPES) or any(key in node for key in MEDIA_PART_KEYS):
                count += 1
            else:
                pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return count


def input_bound(raw_body: bytes, body: dict | None = None, canonical: bytes | None = None) -> int:
    """An upper bound of the prompt's tokens: a token is at least one byte of the body, and each
    media or file part is allowed MEDIA_TOKENS_MAX more."""
    if canonical is None:
        canonical = orjson.dumps(body) if body is not None else raw_body
    return len(raw_body) + media_references(body, canonical) * MEDIA_TOKENS_MAX
