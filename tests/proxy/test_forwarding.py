"""Forwarding over real HTTP: what reaches the target, what comes back, and how failures end."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from devkit import mock_target as target_mock
from devkit.embedded import free_port
from gateway.app import create_app
from gateway.core import metrics
from gateway.core.connections import GatewayRunner
from tests.support.accounts import make_token, proxy_headers
from tests.support.gateways import make_settings
from tests.support.proxy import error_of

PROXY = "/api/v1/proxy"
ECHO = PROXY + "/echo/x"
HOP_BY_HOP_FROM_MOCK = {"x-hop", "keep-alive", "proxy-authenticate"}
UPLOAD_CHUNK_BYTES = 64 * 1024


@pytest.fixture
async def credentials(database) -> dict[str, str]:
    """Proxy headers of a valid full-scope token, bound to one device."""
    issued = await make_token(database)
    return proxy_headers(issued.token)


class RecordingTarget:
    """A real target that records the path of every request it receives, then answers 200."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.url = ""

    async def record(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        async for _ in request.content.iter_any():
            pass
        return web.Response(text="recorded")


async def serve_target(aiohttp_server, handler) -> str:
    """A real target answering every method and path with `handler`; its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


@pytest.fixture
async def recording_target(aiohttp_server) -> RecordingTarget:
    target = RecordingTarget()
    target.url = await serve_target(aiohttp_server, target.record)
    return target


@pytest.fixture
async def early_target(aiohttp_server) -> str:
    """A real target that starts its answer before reading the request body, then reads it all."""

    async def answer_first(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(b"early-")
        async for _ in request.content.iter_any():
            pass
        await response.write(b"done")
        return response

    return await serve_target(aiohttp_server, answer_first)


@pytest.fixture
async def uncancelled_gateway(servers, database, mock_target, clock):
    """The gateway as `tollgate serve` runs it: handlers carry on after their client has gone.

    aiohttp's test server cancels a handler when its client disconnects; production does not."""
    port = free_port()
    settings = make_settings(servers, mock_target, port)
    runner = GatewayRunner(create_app(settings, clock=clock))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield settings.public_url
    await runner.cleanup()


async def echoed(gateway, credentials, method: str = "GET", path: str = ECHO, **kwargs) -> dict:
    response = await gateway.request(method, path, headers={**credentials, **kwargs.pop("headers", {})},
                                     **kwargs)
    assert response.status == 200
    return await response.json()


async def echoed_with(gateway, headers: list[tuple[str, str]]) -> dict:
    response = await gateway.get(ECHO, headers=headers)
    assert response.status == 200
    return await response.json()


async def upstream_headers_of(gateway, credentials, **headers: str) -> dict[str, str]:
    """The headers the target received, by lowercase name."""
    view = await echoed(gateway, credentials, headers=headers)
    return {name.lower(): value for name, value in view["headers"].items()}


def rewritten(body: bytes, target_url: str, public_url: str) -> bytes:
    """What the gateway should deliver: every target authority, plain or `\\/`-escaped, under the mount."""
    target, public = urlsplit(target_url).netloc, urlsplit(public_url).netloc
    for slash in ("/", "\\/"):
        mount = PROXY.replace("/", slash)
        body = body.replace(f"{slash}{slash}{target}".encode(), f"{slash}{slash}{public}{mount}".encode())
    return body


def fixed_body(target_url: str, path: str) -> bytes:
    return target_mock.build_pages(target_url).fixed_bodies[path][0]


async def chunks_of(total_bytes: int):
    block = bytes(range(256)) * (UPLOAD_CHUNK_BYTES // 256)
    remaining = total_bytes
    while remaining:
        chunk = block[: min(remaining, UPLOAD_CHUNK_BYTES)]
        remaining -= len(chunk)
        yield chunk


def body_summary(body: bytes) -> tuple[str, int]:
    return hashlib.sha256(body).hexdigest(), len(body)


async def open_chunked_post(port: int, path: str, credentials: dict[str, str]):
    """Start a chunked POST on a raw connection, so the test decides when each body byte is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in credentials.items())
    request_head = f"POST {path} HTTP/1.1\r\nHost: gateway\r\n{head}Transfer-Encoding: chunked\r\n\r\n"
    writer.write(request_head.encode())
    return reader, writer


def chunk_frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def overrun_after_the_answer(gateway, credentials: dict[str, str]) -> tuple[bytes, bytes]:
    """Send 1 kB, wait for the target's answer to start, then 200 kB; return (status line, rest of reply)."""
    reader, writer = await open_chunked_post(gateway.port, PROXY + "/upload", credentials)
    writer.write(chunk_frame(b"x" * 1000))
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.write(chunk_frame(b"x" * 200_000))
    rest = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return status_line, rest


async def wait_for(predicate, timeout_s: float = 3.0) -> bool:
    """Poll until predicate() holds or timeout_s passes; the server notices disconnects on its own time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


# What reaches the target


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_method_path_query_and_body_arrive_unchanged(gateway, credentials, method):
    body = b"" if method == "GET" else b'{"n": 1, "text": "\xc3\xa9t\xc3\xa9"}'
    path = URL(PROXY + "/echo/a/b.json?x=1&y=two%20words&x=3&empty=&flag", encoded=True)
    view = await echoed(gateway, credentials, method, path, data=body)
    received = (view["method"], view["path"], view["query"], view["body_sha256"], view["body_bytes"])
    expected = (method, "/echo/a/b.json", "x=1&y=two%20words&x=3&empty=&flag", *body_summary(body))
    assert received == expected


async def test_a_five_mebibyte_chunked_upload_streams_through_intact(gateway, credentials):
    total_bytes = 5 * 1024 * 1024
    expected = hashlib.sha256()
    async for chunk in chunks_of(total_bytes):
        expected.update(chunk)
    view = await echoed(gateway, credentials, "POST", data=chunks_of(total_bytes))
    assert (view["body_sha256"], view["body_bytes"]) == (expected.hexdigest(), total_bytes)


async def test_a_declared_length_body_arrives_with_its_content_length(gateway, credentials):
    view = await echoed(gateway, credentials, "POST", data=b"x" * 1000)
    headers = {name.lower(): value for name, value in view["headers"].items()}
    assert (headers.get("content-length"), headers.get("transfer-encoding")) == ("1000", None)


async def test_percent_encoded_paths_are_forwarded_raw(gateway, credentials):
    path = URL(PROXY + "/echo/a%20b%2Cc/%7Euser/%2e%2Ex/x%3By", encoded=True)
    view = await echoed(gateway, credentials, path=path)
    assert view["path"] == "/echo/a%20b%2Cc/%7Euser/%2e%2Ex/x%3By"


async def test_a_raw_query_string_is_forwarded_byte_for_byte(gateway, credentials):
    query = "q=a%2Bb+c&list=%5B1%2C2%5D&u=%e2%82%ac&semi=a;b&slash=/?&&==x"
    view = await echoed(gateway, credentials, path=URL(f"{ECHO}?{query}", encoded=True))
    assert view["query"] == query


async def test_no_accept_or_content_type_is_invented_for_the_target(gateway, credentials):
    view = await echoed(gateway, credentials, "POST", data=b"unlabelled",
                        skip_auto_headers=["Accept", "Content-Type"])
    assert {"accept", "content-type"} & {name.lower() for name in view["headers"]} == set()


async def test_the_clients_content_type_reaches_the_target(gateway, credentials):
    view = await echoed(gateway, credentials, "POST", data=b"a=1", headers={"Content-Type": "text/x-custom"})
    assert view["headers"]["Content-Type"] == "text/x-custom"


async def test_gateway_credentials_are_not_sent_upstream(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials)
    assert {"x-access-token", "x-device-id"} & set(headers) == set()


async def test_hop_by_hop_request_headers_are_dropped(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{
        "Connection": "keep-alive, X-Private-Hop", "Keep-Alive": "timeout=5", "TE": "trailers",
        "X-Private-Hop": "secret", "Proxy-Authorization": "Basic Zm9vOmJhcg=="})
    dropped = {"connection", "keep-alive", "te", "x-private-hop", "proxy-authorization"}
    assert dropped & set(headers) == set()


async def test_an_ordinary_request_header_passes(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"X-Custom": "kept as is"})
    assert headers["x-custom"] == "kept as is"


async def test_x_forwarded_for_names_the_client(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials)
    assert headers["x-forwarded-for"] == "127.0.0.1"


async def test_x_forwarded_for_appends_the_client_to_an_incoming_chain(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"X-Forwarded-For": "203.0.113.9"})
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


async def test_repeated_x_forwarded_for_headers_are_kept_in_order(gateway, credentials):
    headers = [*credentials.items(), ("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.7")]
    view = await echoed_with(gateway, headers)
    assert view["headers"]["X-Forwarded-For"] == "203.0.113.9, 198.51.100.7, 127.0.0.1"


async def test_x_forwarded_for_appends_the_peer_even_when_the_chain_is_trusted(gateway_factory, credentials):
    gateway = await gateway_factory(trust_forwarded=True)
    headers = await upstream_headers_of(gateway, credentials, **{"X-Forwarded-For": "203.0.113.9"})
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


async def test_x_forwarded_proto_and_host_describe_the_gateway(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials)
    public = urlsplit(gateway.settings.public_url)
    assert (headers["x-forwarded-proto"], headers["x-forwarded-host"]) == (public.scheme, public.netloc)


async def test_x_forwarded_host_is_the_public_host_whatever_host_the_client_sends(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, Host="evil.example")
    assert headers["x-forwarded-host"] == urlsplit(gateway.settings.public_url).netloc


async def test_x_forwarded_proto_and_host_come_from_the_public_url(gateway_factory, credentials):
    gateway = await gateway_factory(public_url="https://gateway.example:8443")
    headers = await upstream_headers_of(gateway, credentials, Host="evil.example")
    assert (headers["x-forwarded-proto"], headers["x-forwarded-host"]) == ("https", "gateway.example:8443")


async def test_the_host_header_names_the_target(gateway, credentials, mock_target):
    headers = await upstream_headers_of(gateway, credentials)
    assert headers["host"] == urlsplit(mock_target).netloc


async def test_an_accepted_gzip_is_asked_of_the_target(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"Accept-Encoding": "gzip, br"})
    assert headers["accept-encoding"] == "gzip"


async def test_an_encoding_the_client_refuses_is_not_asked_of_the_target(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"Accept-Encoding": "br"})
    assert headers["accept-encoding"] == "identity"


async def test_a_refused_encoding_is_not_asked_of_the_target(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"Accept-Encoding": "gzip;q=0, deflate"})
    assert headers["accept-encoding"] == "deflate"


async def test_any_encoding_asks_the_target_for_what_the_gateway_can_decode(gateway, credentials):
    headers = await upstream_headers_of(gateway, credentials, **{"Accept-Encoding": "*"})
    assert headers["accept-encoding"] == "gzip, deflate"


# What comes back


async def test_hop_by_hop_response_headers_are_dropped(gateway, credentials):
    response = await gateway.get(PROXY + "/headers", headers=credentials)
    names = {name.lower() for name in response.headers}
    listed = response.headers.get("Connection", "").lower()
    assert (HOP_BY_HOP_FROM_MOCK & names, "x-hop" in listed) == (set(), False)


async def test_an_end_to_end_response_header_passes(gateway, credentials):
    response = await gateway.get(PROXY + "/headers", headers=credentials)
    assert response.headers["X-Upstream"] == "yes"


async def test_a_proxied_response_carries_the_request_id(gateway, credentials):
    response = await gateway.get(ECHO, headers={**credentials, "X-Request-Id": "trace-12345678"})
    assert response.headers["X-Request-Id"] == "trace-12345678"


@pytest.mark.parametrize("code", [201, 204, 304, 404, 418, 503])
async def test_target_status_codes_pass_through(gateway, credentials, code):
    response = await gateway.get(f"{PROXY}/status/{code}", headers=credentials)
    assert response.status == code


async def test_a_connection_is_reused_cleanly_after_a_bodiless_status(gateway, credentials):
    for code in (204, 304):
        await (await gateway.get(f"{PROXY}/status/{code}", headers=credentials)).read()
    view = await echoed(gateway, credentials)
    assert view["path"] == "/echo/x"


async def test_a_head_request_gets_headers_without_a_body(gateway, credentials):
    response = await gateway.head(ECHO, headers=credentials)
    assert (response.status, "Content-Length" in response.headers, await response.read()) == (200, True, b"")


# Rewriting


async def test_the_index_page_has_every_target_url_rewritten(gateway, credentials, mock_target):
    response = await gateway.get(PROXY + "/", headers=credentials)
    expected = rewritten(fixed_body(mock_target, "/"), mock_target, gateway.settings.public_url)
    assert await response.read() == expected


async def test_no_target_authority_is_left_in_the_index_page(gateway, credentials, mock_target):
    response = await gateway.get(PROXY + "/", headers=credentials)
    assert urlsplit(mock_target).netloc.encode() not in await response.read()


@pytest.mark.parametrize("path", ["/static/site.css", "/static/app.js"])
async def test_stylesheets_and_scripts_have_plain_and_escaped_urls_rewritten(gateway, credentials,
                                                                            mock_target, path):
    response = await gateway.get(PROXY + path, headers=credentials)
    expected = rewritten(fixed_body(mock_target, path), mock_target, gateway.settings.public_url)
    assert await response.read() == expected


async def test_a_page_sent_in_tiny_chunks_is_rewritten_like_the_whole_page(gateway, credentials):
    whole = await (await gateway.get(PROXY + "/", headers=credentials)).read()
    split = await (await gateway.get(PROXY + "/split-html", headers=credentials)).read()
    assert split == whole


async def test_a_gzip_page_arrives_rewritten_and_decodable(gateway, credentials, mock_target):
    response = await gateway.get(PROXY + "/gzip-html", headers={**credentials, "Accept-Encoding": "gzip"})
    expected = rewritten(fixed_body(mock_target, "/"), mock_target, gateway.settings.public_url)
    assert await response.read() == expected


async def test_a_rewritten_page_has_no_stale_length_or_encoding(gateway, credentials, mock_target):
    response = await gateway.get(PROXY + "/gzip-html", headers={**credentials, "Accept-Encoding": "gzip"},
                                 auto_decompress=False)
    body = await response.read()
    declared = response.headers.get("Content-Length")
    assert (response.headers.get("Content-Encoding"), declared in (None, str(len(body)))) == (None, True)


async def test_a_binary_body_is_byte_identical(gateway, credentials):
    total_bytes = 1024 * 1024 + 7
    response = await gateway.get(f"{PROXY}/big?bytes={total_bytes}", headers=credentials)
    expected = (target_mock.BIG_BLOCK * 17)[:total_bytes]
    assert await response.read() == expected


async def test_a_json_body_naming_the_target_is_not_rewritten(gateway, credentials, mock_target):
    headers = await upstream_headers_of(gateway, credentials, **{"X-Link": f"{mock_target}/page2"})
    assert headers["x-link"] == f"{mock_target}/page2"


async def test_an_absolute_redirect_points_at_the_gateway(gateway, credentials):
    response = await gateway.get(PROXY + "/redirect", headers=credentials, allow_redirects=False)
    assert response.headers["Location"] == gateway.settings.public_url + PROXY + "/page2"


async def test_a_relative_redirect_stays_under_the_mount(gateway, credentials):
    response = await gateway.get(PROXY + "/redirect-relative", headers=credentials, allow_redirects=False)
    assert response.headers["Location"] == PROXY + "/page2"


async def test_cookies_lose_the_target_domain_and_move_under_the_mount(gateway, credentials):
    response = await gateway.get(PROXY + "/cookie", headers=credentials)
    assert response.headers.getall("Set-Cookie") == [
        f"sid=abc; Path={PROXY}; HttpOnly; SameSite=Lax",
        f"pref=1; Path={PROXY}; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    ]


# Streaming


async def test_a_streamed_body_reaches_the_client_chunk_by_chunk(gateway, credentials):
    response = await gateway.get(PROXY + "/stream?chunks=5&delay_ms=200", headers=credentials)
    first = await response.content.readany()
    first_at = time.monotonic()
    await response.read()
    last_at = time.monotonic()
    # The target sleeps 4 x 200 ms between the first and the last chunk; a buffering gateway would
    # deliver them together, so at least half that gap must separate their arrival.
    assert (first, last_at - first_at >= 0.4) == (b"chunk-0\n", True)


async def test_server_sent_events_pass_through_whole(gateway, credentials):
    response = await gateway.get(PROXY + "/sse?events=3&delay_ms=10", headers=credentials)
    assert (response.content_type, await response.read()) == (
        "text/event-stream", b"data: 0\n\ndata: 1\n\ndata: 2\n\n")


async def test_server_sent_events_arrive_one_by_one(gateway, credentials):
    response = await gateway.get(PROXY + "/sse?events=3&delay_ms=300", headers=credentials)
    first = await response.content.readany()
    first_at = time.monotonic()
    await response.read()
    assert (first, time.monotonic() - first_at >= 0.3) == (b"data: 0\n\n", True)


async def test_the_status_and_headers_reach_the_client_before_any_body_exists(aiohttp_server, gateway_factory,
                                                                             credentials):
    # Headers leave with the first body bytes when those have arrived; with none yet they go alone.
    headers_seen = asyncio.Event()

    async def headers_then_wait(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-Before-Body": "yes"})
        await response.prepare(request)
        await asyncio.wait_for(headers_seen.wait(), 5)  # the client must see the headers first
        await response.write_eof(b"body")
        return response

    gateway = await gateway_factory(target_url=await serve_target(aiohttp_server, headers_then_wait))
    response = await asyncio.wait_for(gateway.get(PROXY + "/x", headers=credentials), 5)
    headers_seen.set()
    assert (response.status, response.headers["X-Before-Body"], await response.read()) == (200, "yes", b"body")


class _HeadersWithFirstBytes(web.StreamResponse):
    """An upstream response whose headers leave together with its first body bytes."""

    _send_headers_immediately = False


@pytest.mark.parametrize("encoding, first", [
    ("gzip", gzip.compress(b"<p>page</p>", mtime=0)[:10]),  # the gzip header alone decodes to nothing
    ("identity", b"h"),  # a possible start of the target's URL, held back by the rewriter
], ids=["gzip-header-only", "url-prefix-held"])
async def test_headers_are_not_held_when_the_first_bytes_rewrite_to_nothing(aiohttp_server, gateway_factory,
                                                                            credentials, encoding, first):
    headers_seen = asyncio.Event()
    whole = gzip.compress(b"<p>page</p>", mtime=0) if encoding == "gzip" else b"hi there"

    async def first_bytes_then_wait(request: web.Request) -> web.StreamResponse:
        response = _HeadersWithFirstBytes(headers={"Content-Type": "text/html", "Content-Encoding": encoding})
        await response.prepare(request)
        await response.write(first)
        await asyncio.wait_for(headers_seen.wait(), 5)  # the client must see the headers first
        await response.write_eof(whole[len(first):])
        return response

    gateway = await gateway_factory(target_url=await serve_target(aiohttp_server, first_bytes_then_wait))
    response = await asyncio.wait_for(gateway.get(PROXY + "/x", headers=credentials), 5)
    headers_seen.set()
    expected = b"<p>page</p>" if encoding == "gzip" else b"hi there"
    assert (response.status, await response.read()) == (200, expected)


# Failures


async def test_an_unreachable_target_is_a_502(gateway_factory, credentials):
    gateway = await gateway_factory(target_url=f"http://127.0.0.1:{free_port()}")
    response = await gateway.get(ECHO, headers=credentials)
    assert (response.status, (await error_of(response))["code"]) == (502, "upstream_unreachable")


async def test_a_target_slower_than_the_read_timeout_is_a_504(gateway_factory, credentials):
    gateway = await gateway_factory(upstream_read_timeout_s=0.3)
    response = await gateway.get(PROXY + "/slow?delay_ms=2000", headers=credentials)
    assert (response.status, (await error_of(response))["code"]) == (504, "upstream_timeout")


async def test_a_declared_length_over_the_limit_is_a_413(gateway_factory, credentials):
    gateway = await gateway_factory(body_size_max_bytes=1000)
    response = await gateway.post(ECHO, headers=credentials, data=b"x" * 1001)
    assert (response.status, (await error_of(response))["code"]) == (413, "payload_too_large")


async def test_a_declared_length_over_the_limit_never_reaches_the_target(gateway_factory, credentials,
                                                                         recording_target):
    gateway = await gateway_factory(target_url=recording_target.url, body_size_max_bytes=1000)
    await (await gateway.post(ECHO, headers=credentials, data=b"x" * 1001)).read()
    assert recording_target.paths == []


async def test_a_body_at_the_limit_is_forwarded(gateway_factory, credentials):
    gateway = await gateway_factory(body_size_max_bytes=1000)
    view = await echoed(gateway, credentials, "POST", data=b"x" * 1000)
    assert view["body_bytes"] == 1000


async def test_a_chunked_body_over_the_limit_is_a_413(gateway_factory, credentials):
    # The target reads the whole body before answering, so the gateway refuses it before any answer.
    gateway = await gateway_factory(body_size_max_bytes=100_000)
    response = await gateway.post(ECHO, headers=credentials, data=chunks_of(300_000))
    assert (response.status, (await error_of(response))["code"]) == (413, "payload_too_large")


async def test_a_chunked_body_at_the_limit_is_forwarded(gateway_factory, credentials):
    gateway = await gateway_factory(body_size_max_bytes=3 * UPLOAD_CHUNK_BYTES)
    view = await echoed(gateway, credentials, "POST", data=chunks_of(3 * UPLOAD_CHUNK_BYTES))
    assert view["body_bytes"] == 3 * UPLOAD_CHUNK_BYTES


async def test_the_next_request_is_forwarded_cleanly_after_a_refused_chunked_body(gateway_factory,
                                                                                credentials):
    gateway = await gateway_factory(body_size_max_bytes=100_000)
    await (await gateway.post(ECHO, headers=credentials, data=chunks_of(300_000))).read()
    view = await echoed(gateway, credentials, "POST", data=b"after")
    assert view["body_bytes"] == 5


async def test_a_target_cutting_the_body_short_fails_the_clients_read(gateway, credentials):
    response = await gateway.get(PROXY + "/drop", headers=credentials)
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), timeout=10)


async def test_a_target_cutting_the_body_short_is_counted_as_a_broken_upstream(gateway, credentials):
    # One vocabulary on both paths (decision 0016): an answer broken off is upstream_broken.
    counter = metrics.UPSTREAM_REQUESTS.labels("target", "upstream_broken")
    before = counter._value.get()
    response = await gateway.get(PROXY + "/drop", headers=credentials)
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), timeout=10)
    assert counter._value.get() == before + 1


async def test_a_client_leaving_mid_stream_is_recorded_as_client_disconnected(gateway, credentials):
    counter = metrics.REQUESTS.labels("proxy", "GET", "200", "client_disconnected")
    before = counter._value.get()
    response = await gateway.get(PROXY + "/stream?chunks=50&delay_ms=50", headers=credentials)
    await response.content.readany()
    response.close()
    assert await wait_for(lambda: counter._value.get() == before + 1)


async def test_a_client_leaving_mid_stream_is_recorded_when_handlers_are_not_cancelled(uncancelled_gateway,
                                                                                     credentials):
    counter = metrics.REQUESTS.labels("proxy", "GET", "200", "client_disconnected")
    before = counter._value.get()
    async with aiohttp.ClientSession() as session:
        response = await session.get(uncancelled_gateway + PROXY + "/stream?chunks=50&delay_ms=50",
                                     headers=credentials)
        await response.content.readany()
        response.close()
        assert await wait_for(lambda: counter._value.get() == before + 1)


async def test_a_client_leaving_before_the_target_answers_is_recorded_as_a_499(gateway, credentials):
    counter = metrics.REQUESTS.labels("proxy", "GET", "499", "client_disconnected")
    before = counter._value.get()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(gateway.get(PROXY + "/slow?delay_ms=5000", headers=credentials), timeout=1)
    assert await wait_for(lambda: counter._value.get() == before + 1)


async def test_a_client_leaving_before_the_target_answers_is_a_499_when_handlers_are_not_cancelled(
        uncancelled_gateway, credentials):
    counter = metrics.REQUESTS.labels("proxy", "GET", "499", "client_disconnected")
    before = counter._value.get()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session.get(uncancelled_gateway + PROXY + "/slow?delay_ms=500",
                                               headers=credentials), timeout=0.2)
        assert await wait_for(lambda: counter._value.get() == before + 1)


async def test_a_chunked_body_passing_the_limit_after_the_target_answered_cuts_the_response(
        gateway_factory, credentials, early_target):
    # The status went out with the target's first bytes, so the only way left to refuse is to cut.
    gateway = await gateway_factory(target_url=early_target, body_size_max_bytes=100_000)
    status_line, rest = await overrun_after_the_answer(gateway, credentials)
    assert (status_line.split()[1], rest.endswith(b"0\r\n\r\n")) == (b"200", False)


async def test_a_body_passing_the_limit_after_the_answer_is_not_counted_as_the_targets_failure(
        gateway_factory, credentials, early_target):
    gateway = await gateway_factory(target_url=early_target, body_size_max_bytes=100_000)
    counter = metrics.REQUESTS.labels("proxy", "POST", "200", "bad_request")
    before = counter._value.get()
    await overrun_after_the_answer(gateway, credentials)
    assert await wait_for(lambda: counter._value.get() == before + 1)


async def test_a_client_hanging_up_mid_upload_is_recorded_as_a_499(uncancelled_gateway, credentials):
    counter = metrics.REQUESTS.labels("proxy", "POST", "499", "client_disconnected")
    before = counter._value.get()
    _, writer = await open_chunked_post(urlsplit(uncancelled_gateway).port, ECHO, credentials)
    writer.write(chunk_frame(b"hello"))
    await writer.drain()
    await asyncio.sleep(0.1)  # let the gateway start forwarding; hanging up earlier ends the same way
    writer.close()
    assert await wait_for(lambda: counter._value.get() == before + 1)
