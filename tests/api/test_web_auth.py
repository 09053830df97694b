"""Who is calling the JSON API: a bearer that is not UTF-8."""

from __future__ import annotations

import asyncio

import orjson
import pytest


async def raw_request(gateway, head: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP client library would (a non-UTF-8 header value); the status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("method, path", [("GET", "/api/v1/auth/me"), ("GET", "/api/v1/currency/balance"),
                                          ("GET", "/api/v1/admin/users"), ("POST", "/api/v1/auth/logout")])
@pytest.mark.parametrize("credential", [b"\xff\xfe", b"eyJ\xc3\xa9.x.y", b"\xed\xa0\x80"])
async def test_a_non_utf8_bearer_is_401_invalid_jwt(gateway, database, method, path, credential):
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
            "Authorization: Bearer ").encode() + credential + b"\r\n\r\n"
    status, body = await raw_request(gateway, head)
    assert (status, body["error"]["code"]) == (401, "invalid_jwt")
