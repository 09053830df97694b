"""Tests for the mock upstream: it must really show the edges the gateway is tested against."""

import gzip
import hashlib

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, unused_port

from devkit.mock_target import build_app


@pytest.fixture
def base_url() -> str:
    return f"http://127.0.0.1:{unused_port()}"


@pytest.fixture
async def client(aiohttp_server, aiohttp_client, base_url: str) -> TestClient:
    # The mock embeds its own address in links, so it must listen on the port it was told about.
    port = int(base_url.rsplit(":", 1)[1])
    server = await aiohttp_server(build_app(public_base_url=base_url), port=port)
    return await aiohttp_client(server)


async def test_echo_returns_path_query_and_headers(client: TestClient) -> None:
    """A request to /echo comes back with its raw path, raw query and every header as sent."""
    response = await client.post("/echo/a%2Fb/c?x=1&y=%20", headers={"X-Forwarded-For": "203.0.113.7"})
    echoed = await response.json()
    assert (echoed["method"], echoed["path"], echoed["query"], echoed["headers"]["X-Forwarded-For"]) == (
        "POST",
        "/echo/a%2Fb/c",
        "x=1&y=%20",
        "203.0.113.7",
    )


async def test_echo_joins_repeated_headers(client: TestClient) -> None:
    """A header sent twice is echoed once, its values joined by a comma."""
    response = await client.get("/certificates/x", headers=[("X-Repeat", "one"), ("X-Repeat", "two")])
    assert (await response.json())["headers"]["X-Repeat"] == "one, two"


async def test_echo_hashes_a_streamed_body(client: TestClient) -> None:
    """A chunked 5 MiB upload is hashed and counted exactly."""
    piece = b"0123456789abcdef" * 4096

    async def body():
        for _ in range(80):
            yield piece

    response = await client.put("/echo/upload", data=body())
    echoed = await response.json()
    assert (echoed["body_bytes"], echoed["body_sha256"]) == (
        len(piece) * 80,
        hashlib.sha256(piece * 80).hexdigest(),
    )


async def test_index_links_are_absolute(client: TestClient, base_url: str) -> None:
    """The index page links to the mock by its own absolute base URL."""
    html = await (await client.get("/")).text()
    assert all(f'"{base_url}{path}"' in html for path in ("/page2", "/static/site.css", "/static/app.js"))


async def test_redirect_location_is_absolute(client: TestClient, base_url: str) -> None:
    """/redirect answers 302 with an absolute Location pointing back at the mock."""
    response = await client.get("/redirect", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, f"{base_url}/page2")


async def test_cookie_sets_two_cookies(client: TestClient) -> None:
    """/cookie sends two Set-Cookie headers, the first scoped to the mock's host."""
    response = await client.get("/cookie")
    assert response.headers.getall("Set-Cookie") == [
        "sid=abc; Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Lax",
        "pref=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    ]


async def test_drop_truncates_the_response(client: TestClient) -> None:
    """/drop closes the connection mid-body, so reading the body fails."""
    response = await client.get("/drop")
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_gzip_html_is_compressed(client: TestClient, base_url: str) -> None:
    """/gzip-html is gzip on the wire when the client accepts gzip."""
    response = await client.get("/gzip-html", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    body = await response.read()
    assert (response.headers["Content-Encoding"], f"{base_url}/page2".encode() in gzip.decompress(body)) == (
        "gzip",
        True,
    )


async def test_gzip_html_is_plain_without_accept_encoding(client: TestClient) -> None:
    """/gzip-html falls back to plain HTML when the client does not accept gzip."""
    response = await client.get("/gzip-html", headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in response.headers


async def test_split_html_arrives_in_many_chunks(client: TestClient) -> None:
    """/split-html is the index page delivered as many tiny HTTP chunks."""
    index_html = await (await client.get("/")).read()
    response = await client.get("/split-html")
    chunk_count = 0
    received = b""
    async for data, end_of_chunk in response.content.iter_chunks():
        received += data
        chunk_count += bool(data) and end_of_chunk  # the empty terminating chunk is not content
    assert (received, chunk_count) == (index_html, -(-len(index_html) // 7))


async def test_stream_writes_numbered_chunks(client: TestClient) -> None:
    """/stream writes the requested number of numbered lines."""
    response = await client.get("/stream", params={"chunks": "3", "delay_ms": "1"})
    assert await response.text() == "chunk-0\nchunk-1\nchunk-2\n"


async def test_sse_writes_data_frames(client: TestClient) -> None:
    """/sse writes one data frame per event as text/event-stream."""
    response = await client.get("/sse", params={"events": "2", "delay_ms": "1"})
    assert (response.content_type, await response.text()) == ("text/event-stream", "data: 0\n\ndata: 1\n\n")


async def test_big_sends_the_requested_bytes(client: TestClient) -> None:
    """/big sends exactly the number of bytes asked for, across several 64 KiB chunks."""
    response = await client.get("/big", params={"bytes": str(200_000)})
    assert len(await response.read()) == 200_000


async def test_status_answers_the_requested_code(client: TestClient) -> None:
    """/status/503 answers 503."""
    assert (await client.get("/status/503")).status == 503


async def test_headers_include_hop_by_hop(client: TestClient) -> None:
    """/headers sends hop-by-hop headers alongside a normal one, for the gateway to strip."""
    response = await client.get("/headers")
    assert (response.headers["X-Hop"], response.headers["Keep-Alive"], response.headers["X-Upstream"]) == (
        "1",
        "timeout=5",
        "yes",
    )


async def test_bad_query_parameter_is_rejected(client: TestClient) -> None:
    """A non-numeric delay_ms is a 400, not a crash."""
    assert (await client.get("/slow", params={"delay_ms": "soon"})).status == 400


async def test_one_server_serves_the_target_and_the_ai_apis(client: TestClient) -> None:
    """build_app serves the HTML target and, on the same port, the mock AI APIs."""
    page = await client.get("/")
    models = await client.get("/openai/v1/models", headers={"Authorization": "Bearer sk-mock-1"})
    assert (page.content_type, models.status, (await models.json())["object"]) == ("text/html", 200, "list")


async def test_the_browser_page_links_its_resources_absolutely_and_each_answers(client: TestClient, base_url: str):
    """/browser names its stylesheet, script and image by absolute URL; each is served."""
    page = await client.get("/browser")
    html = await page.text()
    resources = {"/static/browser.css": "text/css", "/static/browser.js": "application/javascript",
                 "/img/logo.png": "image/png"}
    assert all(f'"{base_url}{path}"' in html for path in resources)
    for path, content_type in resources.items():
        response = await client.get(path)
        assert (response.status, response.content_type) == (200, content_type)
    assert f'fetch("{base_url}/api/data"' in await (await client.get("/static/browser.js")).text()


async def test_the_browser_page_sets_a_cookie_named_like_the_gateways(client: TestClient):
    """/browser tries to write tollgate_session (named, and nameless as RFC 6265bis browsers read
    `=tollgate_session=…`), which the gateway must never let through."""
    cookies = (await client.get("/browser")).headers.getall("Set-Cookie")
    assert cookies == ["theme=dark; Path=/", "tollgate_session=from-the-target; Path=/",
                       "=tollgate_session=nameless-from-the-target; Path=/"]


async def test_api_data_echoes_the_method_the_json_and_the_cookies_received(client: TestClient):
    response = await client.post("/api/data", json={"hello": "target"}, headers={"Cookie": "theme=dark"})
    assert await response.json() == {"method": "POST", "received": {"hello": "target"}, "cookie": "theme=dark"}
