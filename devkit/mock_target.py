"""A real aiohttp upstream for the dev run, the tests and bench: an HTML target with awkward edges."""

import asyncio
import base64
import contextlib
import gzip
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDictProxy

from devkit import mock_ai

logger = logging.getLogger(__name__)

# Query parameters above these limits are clamped, so a typo cannot tie the mock up for hours.
DELAY_MS_MAX = 60_000
STREAM_CHUNKS_MAX = 10_000
SSE_EVENTS_MAX = 10_000
BIG_BYTES_MAX = 256 * 1024 * 1024
BIG_CHUNK_BYTES = 64 * 1024
SPLIT_CHUNK_BYTES_DEFAULT = 7
SPLIT_DELAY_MS_DEFAULT = 1
ECHO_READ_CHUNK_BYTES = 64 * 1024

# One precomputed 64 KiB block, sliced for the last chunk, keeps /big free of per-request allocation.
BIG_BLOCK = bytes(range(256)) * (BIG_CHUNK_BYTES // 256)

# A 1x1 PNG: the image the pages show (a browser must decode it for the browser tests to pass).
LOGO_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                            "60e6kgAAAABJRU5ErkJggg==")

# Hop-by-hop headers (RFC 9110 section 7.6.1), including one named by Connection, for the gateway to strip.
HOP_BY_HOP_HEADERS = {
    "Connection": "keep-alive, X-Hop",
    "X-Hop": "1",
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": 'Basic realm="mock"',
    "X-Upstream": "yes",  # the one end-to-end header, which must survive
}


@dataclass(frozen=True, slots=True)
class TargetPages:
    """Bodies with the mock's own base URL baked in, built once at start-up."""

    public_base_url: str
    host: str
    index_html: bytes
    index_html_gzip: bytes
    fixed_bodies: dict[str, tuple[bytes, str]]  # path -> (body, content type), for routes that never vary


PAGES_KEY = web.AppKey("pages", TargetPages)


def build_pages(public_base_url: str) -> TargetPages:
    """Validate the base URL and render every fixed body against it."""
    parts = urlsplit(public_base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"public_base_url must look like http://host:port, got {public_base_url!r}")
    base = f"{parts.scheme}://{parts.netloc}"
    index_html = (
        "<!doctype html>\n<html><head><title>tollgate mock target</title>\n"
        f'<link rel="stylesheet" href="{base}/static/site.css">\n'
        f'<script src="{base}/static/app.js"></script>\n'
        "</head><body>\n<h1>Mock target</h1>\n"
        f'<p><a href="{base}/page2">Page 2 (absolute)</a></p>\n'
        f'<p><a href="//{parts.netloc}/x">Protocol-relative</a></p>\n'
        '<p><a href="/page2">Page 2 (relative)</a></p>\n'
        "</body></html>\n"
    ).encode()
    page2_html = f'<!doctype html>\n<html><body><h1>Page 2</h1><a href="{base}/">home</a></body></html>\n'
    site_css = f"body {{ background: url({base}/img/logo.png) no-repeat; }}\n"
    escaped_base = base.replace("/", "\\/")  # how JSON encoders may write URLs inside scripts
    app_js = f'fetch("{base}/api/data");\nvar api = "{escaped_base}\\/api";\n'
    return TargetPages(
        public_base_url=base,
        host=parts.hostname,
        index_html=index_html,
        # mtime=0 keeps the compressed bytes identical across runs, which bench comparisons rely on.
        index_html_gzip=gzip.compress(index_html, mtime=0),
        fixed_bodies={
            "/": (index_html, "text/html"),
            "/page2": (page2_html.encode(), "text/html"),
            "/static/site.css": (site_css.encode(), "text/css"),
            "/static/app.js": (app_js.encode(), "application/javascript"),
            **browser_bodies(base),
        },
    )


def browser_bodies(base: str) -> dict[str, tuple[bytes, str]]:
    """A page for a real browser: a stylesheet, a script, an image, and a fetch the script makes
    (a POST, which a cookie session must let through from the gateway's own pages)."""
    page = (
        "<!doctype html>\n<html><head><title>tollgate browser page</title>\n"
        f'<link rel="stylesheet" href="{base}/static/browser.css">\n'
        f'<script src="{base}/static/browser.js" defer></script>\n'
        "</head><body>\n<h1>Browser page</h1>\n"
        f'<img id="logo" src="{base}/img/logo.png" alt="logo" width="16" height="16">\n'
        '<pre id="fetched">waiting</pre>\n'
        f'<p><a href="{base}/page2">Page 2</a></p>\n'
        "</body></html>\n"
    )
    css = f"h1 {{ color: rgb(0, 128, 0); }}\nbody {{ background: url({base}/img/logo.png) repeat-x; }}\n"
    script = (
        "window.scriptRan = true;\n"
        f'fetch("{base}/api/data", {{method: "POST", headers: {{"Content-Type": "application/json"}},\n'
        '                          body: JSON.stringify({hello: "target"})})\n'
        "  .then(function (response) { return response.text().then(function (text) {\n"
        '    document.getElementById("fetched").textContent = response.status + " " + text; }); })\n'
        '  .catch(function (error) { document.getElementById("fetched").textContent = "failed " + error; });\n'
    )
    return {"/browser": (page.encode(), "text/html"), "/static/browser.css": (css.encode(), "text/css"),
            "/static/browser.js": (script.encode(), "application/javascript")}


def read_integer(request: web.Request, name: str, *, default: int, maximum: int) -> int:
    """Read a non-negative integer query parameter, clamped to `maximum`."""
    raw = request.query.get(name)
    if raw is None:
        return default
    # isascii() because isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer\n")
    return min(int(raw), maximum)


def join_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Every received header under its first-seen spelling, repeated values joined by ", "."""
    joined: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in headers.items():
        first = spelling.setdefault(name.lower(), name)
        joined[first] = f"{joined[first]}, {value}" if first in joined else value
    return joined


async def start_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    """Start a chunked response; later writes go to the socket as they happen."""
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = content_type
    response.charset = "utf-8"
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def write_frames(
    request: web.Request, content_type: str, frames: Iterable[bytes], delay_ms: int
) -> web.StreamResponse:
    """Send each frame as its own HTTP chunk, pausing between them so TCP does not coalesce them."""
    response = await start_stream(request, content_type)
    for number, frame in enumerate(frames):
        if number:
            await asyncio.sleep(delay_ms / 1000)
        await response.write(frame)  # write() drains when needed; StreamResponse.drain() is deprecated
    await response.write_eof()
    return response


async def fixed_body(request: web.Request) -> web.Response:
    body, content_type = request.app[PAGES_KEY].fixed_bodies[request.path]
    response = web.Response(body=body, content_type=content_type, charset="utf-8")
    if request.path == "/browser":
        # A cookie of the target's own, and one that tries to take the gateway's session cookie's place.
        response.headers.add("Set-Cookie", "theme=dark; Path=/")
        response.headers.add("Set-Cookie", "tollgate_session=from-the-target; Path=/")
        # A nameless cookie: the browser sends its value alone, which reads as the gateway's cookie.
        response.headers.add("Set-Cookie", "=tollgate_session=nameless-from-the-target; Path=/")
    return response


async def logo(request: web.Request) -> web.Response:
    return web.Response(body=LOGO_PNG, content_type="image/png")


async def api_data(request: web.Request) -> web.Response:
    """What a page's fetch reaches: the method, the JSON it sent and the cookies the target received."""
    received = await request.json() if request.body_exists else None
    return web.json_response({"method": request.method, "received": received,
                              "cookie": request.headers.get("Cookie", "")})


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{request.app[PAGES_KEY].public_base_url}/page2")


async def redirect_relative(request: web.Request) -> web.Response:
    raise web.HTTPFound("/page2")


async def cookie(request: web.Request) -> web.Response:
    response = web.Response(text="cookies set\n")
    # Raw header strings rather than set_cookie(), so the exact attributes the gateway rewrites are fixed here.
    response.headers.add("Set-Cookie", f"sid=abc; Domain={request.app[PAGES_KEY].host}; Path=/; HttpOnly; SameSite=Lax")
    response.headers.add("Set-Cookie", "pref=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT")
    return response


async def echo(request: web.Request) -> web.Response:
    # Hashing chunk by chunk keeps memory flat, so bodies of any size can be checked end to end.
    digest = hashlib.sha256()
    body_bytes = 0
    async for chunk in request.content.iter_chunked(ECHO_READ_CHUNK_BYTES):
        digest.update(chunk)
        body_bytes += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": join_headers(request.headers),
            "body_sha256": digest.hexdigest(),
            "body_bytes": body_bytes,
        }
    )


async def slow(request: web.Request) -> web.Response:
    delay_ms = read_integer(request, "delay_ms", default=1000, maximum=DELAY_MS_MAX)
    await asyncio.sleep(delay_ms / 1000)
    return web.Response(text="slow")


async def stream(request: web.Request) -> web.StreamResponse:
    chunks = read_integer(request, "chunks", default=5, maximum=STREAM_CHUNKS_MAX)
    delay_ms = read_integer(request, "delay_ms", default=100, maximum=DELAY_MS_MAX)
    frames = (f"chunk-{number}\n".encode() for number in range(chunks))
    return await write_frames(request, "text/plain", frames, delay_ms)


async def server_sent_events(request: web.Request) -> web.StreamResponse:
    events = read_integer(request, "events", default=5, maximum=SSE_EVENTS_MAX)
    delay_ms = read_integer(request, "delay_ms", default=100, maximum=DELAY_MS_MAX)
    frames = (f"data: {number}\n\n".encode() for number in range(events))
    return await write_frames(request, "text/event-stream", frames, delay_ms)


async def big(request: web.Request) -> web.StreamResponse:
    total_bytes = read_integer(request, "bytes", default=BIG_CHUNK_BYTES, maximum=BIG_BYTES_MAX)
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    response.content_length = total_bytes
    await response.prepare(request)
    remaining_bytes = total_bytes
    while remaining_bytes:
        chunk = BIG_BLOCK[: min(remaining_bytes, BIG_CHUNK_BYTES)]
        await response.write(chunk)
        remaining_bytes -= len(chunk)
    await response.write_eof()
    return response


async def gzip_html(request: web.Request) -> web.Response:
    pages = request.app[PAGES_KEY]
    headers = {"Vary": "Accept-Encoding"}
    response = web.Response(body=pages.index_html, content_type="text/html", charset="utf-8", headers=headers)
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        # Pre-compressed bytes with the header set by hand; aiohttp only compresses when asked to.
        response.body = pages.index_html_gzip
        response.headers["Content-Encoding"] = "gzip"
    return response


async def split_html(request: web.Request) -> web.StreamResponse:
    chunk_bytes = read_integer(request, "chunk_bytes", default=SPLIT_CHUNK_BYTES_DEFAULT, maximum=BIG_CHUNK_BYTES)
    delay_ms = read_integer(request, "delay_ms", default=SPLIT_DELAY_MS_DEFAULT, maximum=DELAY_MS_MAX)
    if chunk_bytes == 0:
        raise web.HTTPBadRequest(text="chunk_bytes must be at least 1\n")
    body = request.app[PAGES_KEY].index_html
    # Tiny chunks split the absolute URLs across boundaries, which the gateway's rewriter must survive.
    frames = (body[offset : offset + chunk_bytes] for offset in range(0, len(body), chunk_bytes))
    return await write_frames(request, "text/html", frames, delay_ms)


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text="code must be between 200 and 599\n")
    if code in (204, 304):
        return web.Response(status=code)  # these statuses must not carry a body
    return web.json_response({"status": code}, status=code)


async def drop(request: web.Request) -> web.StreamResponse:
    response = await start_stream(request, "text/plain")
    await response.write(b"partial-")
    # Closing the transport mid-body leaves the client with a chunked response that never ends;
    # aiohttp's own write_eof then fails with a ConnectionError, which it treats as a client gone.
    assert request.transport is not None
    request.transport.close()
    return response


async def hop_by_hop_headers(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers=HOP_BY_HOP_HEADERS)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_target_app(*, public_base_url: str) -> web.Application:
    """The HTML/HTTP target: pages with absolute links, redirects, cookies, echo and edge cases."""
    app = web.Application()
    app[PAGES_KEY] = build_pages(public_base_url)
    for path in app[PAGES_KEY].fixed_bodies:
        app.router.add_get(path, fixed_body)
    app.router.add_get("/img/logo.png", logo)
    app.router.add_route("*", "/api/data", api_data)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/redirect-relative", redirect_relative)
    app.router.add_get("/cookie", cookie)
    for prefix in ("/echo", "/certificates"):
        app.router.add_route("*", prefix, echo)
        app.router.add_route("*", prefix + "/{tail:.*}", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stream", stream)
    app.router.add_get("/sse", server_sent_events)
    app.router.add_get("/big", big)
    app.router.add_get("/gzip-html", gzip_html)
    app.router.add_get("/split-html", split_html)
    app.router.add_get(r"/status/{code:\d{3}}", status)
    app.router.add_get("/drop", drop)
    app.router.add_get("/headers", hop_by_hop_headers)
    app.router.add_get("/health", health)
    return app


def build_app(*, public_base_url: str) -> web.Application:
    """Every mock upstream in one application: the HTML target and the OpenAI/Anthropic/Gemini APIs."""
    app = build_target_app(public_base_url=public_base_url)
    mock_ai.add_ai_routes(app)
    return app


async def serve(host: str, port: int, *, public_base_url: str | None = None) -> None:
    """Serve until cancelled; the base URL defaults to http://host:port."""
    if public_base_url is None:
        if port <= 0:
            raise ValueError("a fixed port is needed to derive public_base_url; pass one explicitly")
        url_host = f"[{host}]" if ":" in host else host
        public_base_url = f"http://{url_host}:{port}"
    # No access log: bench drives this at high rates and the gateway already logs every call.
    runner = web.AppRunner(build_app(public_base_url=public_base_url), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("mock upstream listening on %s:%d as %s", host, port, public_base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(host: str, port: int, public_base_url: str | None = None) -> None:
    """Blocking entry point for `python -m devkit mock-upstream`."""
    # Ctrl-C is the normal way to stop the dev server, not an error worth a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, public_base_url=public_base_url))
