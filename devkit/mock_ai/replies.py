"""Answers before they are sent: the reply, the error in each provider's shape, and the checks every builder shares."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devkit.mock_ai.models import MODELS, ModelInfo

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


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


# A provider endpoint: (parsed body, request id, request=, state=) -> the whole answer.
Builder = Callable[..., Reply]
