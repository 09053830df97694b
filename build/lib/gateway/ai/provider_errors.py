"""An error inside a stream that already started (its status line is gone): the provider's own
error event, so an SDK reading the stream raises its usual exception."""

from __future__ import annotations

import orjson

from gateway.core.error_shapes import error_body
from gateway.core.errors import GatewayError


def stream_error_frame(provider: str, error: GatewayError, request_id: str) -> bytes:
    body = orjson.dumps(error_body(provider, error, request_id))
    if provider == "anthropic":
        return b"event: error\ndata: " + body + b"\n\n"
    if provider == "openai":
        return b"data: " + body + b"\n\n"
    return b""  # Gemini streams have no error event: the stream is closed cleanly
