"""Request bodies with a Content-Encoding: forwarded byte for byte on the proxy, inflated with a cap on JSON.

The attack of 2026-12-01 (H1) showed the server inflating bodies while the proxy forwarded the
client's Content-Encoding and compressed Content-Length: truncated uploads, a desynchronised
upstream connection, and requests smuggled past the certificates_only scope.
"""

from __future__ import annotations

import asyncio
import gzip
import resource
import zlib

import orjson
import pytest

from tests.conftest import make_token, proxy_headers, register
from tests.raw_targets import EarlyTarget
from tests.test_ai_routes import start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

PROXY = "/api/v1/proxy"
SMUGGLED = b"GET /admin/delete-everything HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
# Not a real brotli stream: the proxy must not care what the bytes are, only pass them on.
BROTLI_LOOKALIKE = bytes.fromhex("1b0d00f8a5404c6a2d6e4c2b01")


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


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


# The JSON API and the AI routes: inflated here, with the cap on what comes out


async def test_the_json_api_reads_a_gzip_body(gateway, database):
    await register(gateway, "zip@example.com", password="correct horse battery")
    body = gzip.compress(orjson.dumps({"email": "zip@example.com", "password": "correct horse battery"}))
    response = await gateway.post("/api/v1/auth/login", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 200
    assert "access_token" in await response.json()


async def test_the_json_api_reads_a_deflate_body(gateway, database):
    body = deflate(orjson.dumps({"email": "nobody@example.com", "password": "wrong password here"}))
    response = await gateway.post("/api/v1/auth/login", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert response.status == 401


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh",
                                  "/api/v1/auth/magic-link"])
@pytest.mark.parametrize("coding, body", [
    ("gzip", b"garbage"),
    ("deflate", b"garbage"),
    ("gzip", gzip.compress(b'{"email": "a@example.com"}')[:-6]),  # cut short
    ("gzip", gzip.compress(b'{"email": "a@example.com"}') + b"trailing"),
], ids=["gzip-garbage", "deflate-garbage", "gzip-cut-short", "gzip-trailing-bytes"])
async def test_a_corrupt_encoded_body_is_a_400(gateway, database, path, coding, body):
    response = await gateway.post(path, data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["request_id"]) == ("invalid_content_encoding", response.headers["X-Request-Id"])


@pytest.mark.parametrize("coding", ["br", "compress", "zstd", "gzip, gzip", "rot13"])
async def test_an_encoding_the_gateway_cannot_read_is_a_415(gateway, database, coding):
    response = await gateway.post("/api/v1/auth/login", data=b"{}", headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_content_encoding"


async def test_a_deflate_bomb_is_a_413_without_inflating_it(gateway, database):
    compressor = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()  # 1 GiB inflated
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = await gateway.post("/api/v1/auth/login", data=bomb, headers={
        "Content-Type": "application/json", "Content-Encoding": "deflate"})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert grown_kib < 100 * 1024


async def test_an_ai_route_answers_a_corrupt_body_in_the_providers_shape(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    response = await stack.gateway.post("/openai/v1/chat/completions", data=b"garbage", headers={
        "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json",
        "Content-Encoding": "deflate"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_content_encoding"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_an_ai_route_reads_a_gzip_body_and_charges_the_call(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    body = gzip.compress(orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "Hello"}]}))
    response = await stack.gateway.post("/openai/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 200, await response.text()
    assert (await response.json())["usage"]["completion_tokens"] > 0
    assert len(await stack.charges()) == 1


# A body the gateway reads itself has a deadline (review of the M7 fix: a head deadline alone let a
# body sent a byte every few seconds hold its connection, unauthenticated, for days)


async def dribble(port: int, path: str, headers: dict[str, str], body: bytes, seconds: float) -> bytes:
    """Send a head, then the body a byte at a time for `seconds`; whatever the gateway answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: gateway\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode())
    answer = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for byte in body:
        if loop.time() > deadline or reader.at_eof():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
            answer += await asyncio.wait_for(reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            break
        if b"\r\n\r\n" in answer:
            break
    writer.close()
    return answer


async def test_a_json_body_sent_a_byte_at_a_time_is_a_408_not_an_open_connection(gateway_factory, database):
    gateway = await gateway_factory(request_body_timeout_s=0.5)
    body = orjson.dumps({"email": "nobody@example.com", "password": "x" * 200})
    answer = await dribble(gateway.port, "/api/v1/auth/login", {"Content-Type": "application/json"}, body, 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout" and error["request_id"]


async def test_an_ai_body_sent_a_byte_at_a_time_is_a_408_in_the_providers_shape(gateway_factory, mock_target,
                                                                                database):
    stack = await start(gateway_factory, mock_target, database, request_body_timeout_s=0.5)
    body = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 200}]})
    answer = await dribble(stack.gateway.server.port, "/openai/v1/chat/completions",
                           {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}, body, 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "invalid_request_error"
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0
