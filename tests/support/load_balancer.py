"""A round-robin load balancer for tests: a small aiohttp reverse proxy in front of several gateways.

Each request goes to the next backend in turn (strictly alternating, so a test knows which instance
served which request) over a fresh connection; the answer streams back with an `X-Backend` header
naming the backend's port. Headers and bodies pass as they are, like a plain L7 balancer.
"""

from __future__ import annotations

import itertools

import aiohttp
from aiohttp import web

# Hop-by-hop headers (RFC 9110 7.6.1) and what aiohttp sets itself on each leg.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "host", "content-length"}
BACKEND_HEADER = "X-Backend"


class RoundRobin:
    """The balancer's state: the backends (base URLs) and the turn of the next request."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.turns = itertools.cycle(range(len(backends)))
        self.served: list[str] = []  # the backend of each request, in order
        self.session: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        backend = self.backends[next(self.turns)]
        self.served.append(backend)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self.session.request(request.method, backend + request.path_qs, headers=headers, data=body,
                                        allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            response.headers[BACKEND_HEADER] = backend.rsplit(":", 1)[1]
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def app(self) -> web.Application:
        async def session_ctx(_app: web.Application):
            # No pooling and no decompression: every request is its own connection to the backend.
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                                 auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30))
            yield
            await self.session.close()

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.cleanup_ctx.append(session_ctx)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app
