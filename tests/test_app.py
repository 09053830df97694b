"""The aiohttp application's wiring: request bodies reach handlers as sent (H1), every PostgreSQL query counted."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from tests.support.accounts import make_token, proxy_headers
from tests.support.bodies import deflate
from tests.support.metrics import database_queries, settle
from tests.support.raw_targets import EarlyTarget

ECHO = "/api/v1/proxy/echo/x"


async def test_the_query_counter_sees_a_cold_lookup(gateway, database):
    issued = await make_token(database)
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    # The lookup itself, plus the pool's reset statement when the connection is released.
    assert database_queries() > before


# Request bodies with a Content-Encoding are forwarded byte for byte on the proxy. The attack of
# 2026-12-01 (H1) showed the server inflating bodies while the proxy forwarded the client's
# Content-Encoding and compressed Content-Length: truncated uploads, a desynchronised upstream
# connection, and requests smuggled past the certificates_only scope.


PROXY = "/api/v1/proxy"
SMUGGLED = b"GET /admin/delete-everything HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
# Not a real brotli stream: the proxy must not care what the bytes are, only pass them on.
BROTLI_LOOKALIKE = bytes.fromhex("1b0d00f8a5404c6a2d6e4c2b01")


@pytest.fixture
async def early_target():
    targets: list[EarlyTarget] = []

    async def start_target(drain: bool) -> EarlyTarget:
        target = await EarlyTarget(drain=drain).start()
        targets.append(target)
        return target

    yield start_target
    for target in targets:
        await target.close()


async def send_raw(port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One request on a fresh connection, exactly these bytes; returns the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n{head}"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


# The proxy: the client's bytes go on unchanged


@pytest.mark.parametrize("coding, body", [
    ("gzip", gzip.compress(b"hello world " * 100)),
    ("deflate", deflate(b"hello world " * 100)),
    ("br", BROTLI_LOOKALIKE),
], ids=["gzip", "deflate", "br"])
async def test_an_encoded_body_reaches_the_target_byte_for_byte(gateway_factory, database, early_target,
                                                                coding, body):
    target = await early_target(drain=True)
    gateway = await gateway_factory(target_url=target.url)
    issued = await make_token(database)
    answer = await send_raw(gateway.port, PROXY + "/upload", {
        **proxy_headers(issued.token), "Content-Encoding": coding}, body)
    assert answer.startswith(b"HTTP/1.1 200")
    [received] = target.requests
    assert (received.header(b"content-encoding"), received.header(b"content-length"), received.body) == (
        coding.encode(), str(len(body)).encode(), body)


async def test_a_compressed_body_cannot_eat_the_next_users_request(gateway_factory, database, early_target):
    """Stored gzip is longer than its text: an inflating proxy sent fewer bytes than it declared."""
    target = await early_target(drain=True)
    gateway = await gateway_factory(target_url=target.url)
    attacker = await make_token(database, email="attacker@example.com")
    victim = await make_token(database, email="victim@example.com")
    body = gzip.compress(b"x" * 40, compresslevel=0)
    await send_raw(gateway.port, PROXY + "/x/early", {**proxy_headers(attacker.token),
                                                      "Content-Encoding": "gzip"}, body)
    response = await gateway.get(PROXY + "/victim/private?x=1", headers=proxy_headers(victim.token, "victim"))
    assert response.status == 200
    assert target.request_lines == [b"POST /x/early HTTP/1.1", b"GET /victim/private?x=1 HTTP/1.1"]


async def test_a_compressed_body_cannot_smuggle_a_request_past_the_scope(gateway_factory, database,
                                                                         early_target):
    target = await early_target(drain=False)
    gateway = await gateway_factory(target_url=target.url)
    issued = await make_token(database, scope="certificates_only")
    body = gzip.compress(SMUGGLED, compresslevel=0)
    answer = await send_raw(gateway.port, PROXY + "/certificates/early", {
        **proxy_headers(issued.token), "Content-Encoding": "gzip"}, body)
    assert answer.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.2)  # anything smuggled would be parsed by now
    assert not [line for line in target.request_lines if line.startswith(b"GET /admin")]
