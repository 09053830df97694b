"""Forwarding: relay a request to an HTTP target and stream the response back, rewriting URLs."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import metrics
from gateway.call import Call
from gateway.errors import GatewayError, PayloadTooLarge, UpstreamTimeout, UpstreamUnreachable
from gateway.rewriting import BodyRewriter, UrlMap, is_rewritable, rewrite_location, rewrite_set_cookie

# RFC 9110 section 7.6.1: connection-specific fields never cross a proxy.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# tollgate's own credentials stay at the gateway.
GATEWAY_HEADERS = frozenset({"x-access-token", "x-device-id"})
REQUEST_DROP = HOP_BY_HOP | GATEWAY_HEADERS | {"host", "x-forwarded-for", "x-forwarded-proto",
                                               "x-forwarded-host", "accept-encoding"}
RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
CHUNK_BYTES = 64 * 1024


class BodyLimit:
    """Streams the client's body upstream, refusing it once it passes the size limit."""

    def __init__(self, request: web.Request, limit_bytes: int, call: Call) -> None:
        self.request = request
        self.limit_bytes = limit_bytes
        self.call = call
        self.exceeded = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.content.iter_chunked(CHUNK_BYTES):
            self.call.bytes_in += len(chunk)
            if self.call.bytes_in > self.limit_bytes:
                self.exceeded = True
                raise PayloadTooLarge(f"request body exceeds {self.limit_bytes} bytes")
            yield chunk


def _connection_listed(headers: CIMultiDictProxy[str]) -> set[str]:
    listed: set[str] = set()
    for value in headers.getall("connection", ()):
        listed.update(name.strip().lower() for name in value.split(",") if name.strip())
    return listed


def upstream_headers(request: web.Request, client_ip: str, may_rewrite: bool) -> CIMultiDict[str]:
    dropped = REQUEST_DROP | _connection_listed(request.headers)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in dropped)
    # Bodies we may rewrite must arrive in an encoding the standard library can undo.
    accept = request.headers.get("accept-encoding")
    if accept is not None:
        headers["Accept-Encoding"] = "gzip, deflate" if may_rewrite else accept
    prior = request.headers.get("x-forwarded-for")
    headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def client_headers(upstream: aiohttp.ClientResponse, url_map: UrlMap,
                   rewriting_body: bool) -> CIMultiDict[str]:
    dropped = RESPONSE_DROP | _connection_listed(upstream.headers)
    if rewriting_body:
        dropped = dropped | {"content-encoding", "content-md5", "etag"}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "location":
            value = rewrite_location(value, url_map)
        elif lower == "set-cookie":
            value = rewrite_set_cookie(value, url_map)
        headers.add(name, value)
    return headers


def map_upstream_error(error: BaseException) -> GatewayError:
    """One place that turns a client-side failure into the gateway's answer."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout()
    return UpstreamUnreachable(f"upstream unreachable: {type(error).__name__}")


def _decoder(encoding: str) -> zlib._Decompress | None:
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    return None


async def relay(request: web.Request, call: Call, session: aiohttp.ClientSession, url: str,
                url_map: UrlMap, body_limit_bytes: int) -> web.StreamResponse:
    """Forward the request and stream the answer; returns the prepared, finished response."""
    declared = request.content_length
    if declared is not None and declared > body_limit_bytes:
        raise PayloadTooLarge(f"request body exceeds {body_limit_bytes} bytes")
    body = BodyLimit(request, body_limit_bytes, call)
    has_body = request.body_exists
    headers = upstream_headers(request, call.client_ip, may_rewrite=True)
    started = time.perf_counter()
    try:
        upstream_cm = session.request(request.method, url, headers=headers,
                                      data=body.chunks() if has_body else None,
                                      allow_redirects=False, auto_decompress=False)
        upstream = await upstream_cm.__aenter__()
    except PayloadTooLarge:
        raise
    except Exception as error:  # the forwarding boundary: every failure is mapped once
        if body.exceeded:
            raise PayloadTooLarge(f"request body exceeds {body_limit_bytes} bytes") from error
        mapped = map_upstream_error(error)
        metrics.UPSTREAM_REQUESTS.labels("target", mapped.outcome).inc()
        raise mapped from error
    call.upstream_s = time.perf_counter() - started
    metrics.UPSTREAM_SECONDS.labels("target").observe(call.upstream_s)
    try:
        return await _stream_back(request, call, upstream, url_map)
    finally:
        await upstream_cm.__aexit__(None, None, None)


async def _stream_back(request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                       url_map: UrlMap) -> web.StreamResponse:
    encoding = upstream.headers.get("content-encoding", "identity").strip().lower()
    rewrite = is_rewritable(upstream.headers.get("content-type")) and (
        encoding == "identity" or _decoder(encoding) is not None)
    decoder = _decoder(encoding) if rewrite else None
    rewriter = BodyRewriter(url_map.body_replacements()) if rewrite else None
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(client_headers(upstream, url_map, rewriting_body=rewrite))
    response.headers.update(call.extra_headers)
    if not rewrite and upstream.content_length is not None:
        response.content_length = upstream.content_length
    call.status = upstream.status
    await response.prepare(request)
    # From here the status is fixed: failures end the stream and are recorded as the outcome.
    try:
        async for chunk in upstream.content.iter_any():
            if decoder is not None:
                chunk = decoder.decompress(chunk)
            if rewriter is not None:
                chunk = rewriter.feed(chunk)
            if chunk:
                call.bytes_out += len(chunk)
                await response.write(chunk)
        tail = (decoder.flush() if decoder is not None else b"")
        if rewriter is not None:
            tail = rewriter.feed(tail) + rewriter.flush()
        if tail:
            call.bytes_out += len(tail)
            await response.write(tail)
        await response.write_eof()
        call.outcome = "ok" if upstream.status < 500 else "upstream_error"
        metrics.UPSTREAM_REQUESTS.labels("target", call.outcome).inc()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as error:
        if request.transport is None or request.transport.is_closing():
            call.outcome = "client_disconnected"
        else:
            call.outcome = "upstream_error"
        metrics.UPSTREAM_REQUESTS.labels("target", call.outcome).inc()
        _abort(request, error)
    except (aiohttp.ClientError, asyncio.TimeoutError, zlib.error) as error:
        call.outcome = "upstream_timeout" if isinstance(error, asyncio.TimeoutError) else "upstream_error"
        metrics.UPSTREAM_REQUESTS.labels("target", call.outcome).inc()
        _abort(request, error)
    return response


def _abort(request: web.Request, error: BaseException) -> None:
    """A response already started cannot change status: cut the connection so the client sees it."""
    if request.transport is not None:
        request.transport.close()
