"""The reference the desktop path is measured against: the thinnest aiohttp passthrough proxy.

    python -m bench.bare_proxy --port P --upstream http://127.0.0.1:M [--workers N]

One shared `ClientSession` (keep-alive pool), uvloop, the request and response bodies streamed, hop-by-hop
headers dropped, no authentication, no metering, no metrics, no rewriting. What tollgate adds beyond this
is what its own work costs (issue 13).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"))
CHUNK_BYTES = 64 * 1024
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def passthrough(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    headers = [(name, value) for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP]
    body = request.content.iter_chunked(CHUNK_BYTES) if request.body_exists else None
    async with session.request(request.method, request.app[UPSTREAM] + request.raw_path, headers=headers,
                               data=body, allow_redirects=False, auto_decompress=False) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def _session_ctx(app: web.Application):
    connector = aiohttp.TCPConnector(limit=256)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         cookie_jar=aiohttp.DummyCookieJar(),
                                         skip_auto_headers=("User-Agent", "Accept-Encoding"))
    yield
    await app[SESSION].close()


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_route("*", "/{tail:.*}", passthrough)
    return app


def _serve(sock: socket.socket, upstream: str) -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(upstream), sock=sock, access_log=None, print=None, handle_signals=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    if args.workers == 1:
        _serve(sock, args.upstream)
        return 0
    children = []
    for _ in range(args.workers):  # forked workers share the one listening socket
        pid = os.fork()
        if pid == 0:
            _serve(sock, args.upstream)
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(pid, signal.SIGTERM) for pid in children])
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
