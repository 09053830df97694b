"""Reading the desktop proxy's answers: its documented error shape."""

from __future__ import annotations


async def error_of(response) -> dict:
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body["error"]
