"""The desktop proxy in tests: its documented error shape, and browser sessions opened for a test."""

from __future__ import annotations


async def error_of(response) -> dict:
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body["error"]


SESSION_COOKIE = "tollgate_session"


async def open_browser_session(gateway, token: str, device: str = "device-1") -> str:
    """Open a browser session with the desktop client's headers; its cookie value, kept out of the
    test client's own jar so each request says which cookie it sends."""
    response = await gateway.post("/api/v1/proxy/session", headers={"X-Access-Token": token, "X-Device-ID": device})
    assert response.status == 201, await response.text()
    value = response.cookies[SESSION_COOKIE].value
    gateway.session.cookie_jar.clear()
    return value


def cookie_headers(value: str, **extra: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}", **extra}
