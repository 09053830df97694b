"""Forwarding: relay a request to an HTTP target and stream the response back, rewriting URLs."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.core import metrics
from gateway.core.call import Call
from gateway.core.errors import CLIENT_CLOSED_REQUEST, ClientDisconnected, PayloadTooLarge
from gateway.core.failures import upstream_error
from gateway.core.outcomes import Outcome
from gateway.proxy.cookies import COOKIE, names_gateway_cookie, without_gateway_cookie
from gateway.proxy.rewriting import BodyRewriter, UrlMap, is_rewritable, rewrite_location, rewrite_set_cookie

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
# Codings zlib can undo, by the name a client may use -> the name asked of the upstream.
DECODABLE_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
# Headers aiohttp's client would add on its own (Accept: */*, Content-Type: application/octet-stream
# for a streamed body): the target must see the client's request, not defaults it never sent.
INVENTED_HEADERS = ("Accept", "Content-Type")
CHUNK_BYTES = 64 * 1024


class RelayedResponse(web.StreamResponse):
    """A streamed response whose status line and headers leave with the first body bytes: one write
    instead of two for a body that has already arrived (as aiohttp's own `web.Response` does).
    `_stream_back` sends them alone at once when no body bytes are there yet, so a slow or
    event-stream target's headers are never held back."""

    _send_headers_immediately = False


class BodyLimit:
    """Streams the client's body upstream, refusing it once it passes the size limit."""

    def __init__(self, request: web.Request, limit_bytes: int, call: Call) -> None:
        self.request = request
        self.limit_bytes = limit_bytes
        self.call = call
        self.exceeded = False
        self.upstream: aiohttp.ClientResponse | None = None  # set once the target has answered

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.content.iter_chunked(CHUNK_BYTES):
            self.call.bytes_in += len(chunk)
            if self.call.bytes_in > self.limit_bytes:
                self.exceeded = True
                if self.upstream is not None:
                    # The target answered before reading the whole body and its status is already
                    # on its way: close its stream so the relay ends and cuts the client instead of
                    # waiting on a target that waits for the rest of the body.
                    self.upstream.close()
                raise PayloadTooLarge(f"request body exceeds {self.limit_bytes} bytes")
            yield chunk


def _connection_listed(headers: CIMultiDictProxy[str]) -> set[str]:
    listed: set[str] = set()
    for value in headers.getall("connection", ()):
        listed.update(name.strip().lower() for name in value.split(",") if name.strip())
    return listed


def upstream_accept_encoding(accept: str) -> str:
    """The codings the client accepts that the gateway can also undo, else identity.

    Asking for more than the client accepts would hand it, on bodies that are not rewritten, an
    encoding it refused; asking for one we cannot decode would leave rewritable bodies unrewritten.
    """
    chosen: dict[str, None] = {}
    for item in accept.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if _quality(parameters) <= 0:
            continue
        if coding == "*":
            chosen.update(dict.fromkeys(DECODABLE_ENCODINGS.values()))
        elif coding in DECODABLE_ENCODINGS:
            chosen[DECODABLE_ENCODINGS[coding]] = None
    return ", ".join(chosen) or "identity"


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0  # an unreadable weight is not a promise to accept
    return 1.0


def upstream_headers(request: web.Request, may_rewrite: bool, url_map: UrlMap) -> CIMultiDict[str]:
    sent = request.headers
    # A Connection header names more fields to drop; without one (most HTTP/1.1 clients) the set is fixed.
    dropped = REQUEST_DROP | _connection_listed(sent) if "connection" in sent else REQUEST_DROP
    headers = CIMultiDict([(k, v) for k, v in sent.items() if k.lower() not in dropped])
    cookies = headers.getall("cookie", ())
    if any(COOKIE in cookie for cookie in cookies):  # the gateway's own session cookie stays here
        del headers["cookie"]
        for cookie in filter(None, map(without_gateway_cookie, cookies)):
            headers.add("Cookie", cookie)
    # Bodies we may rewrite must arrive in an encoding the standard library can undo.
    accept = request.headers.get("accept-encoding")
    if accept is not None:
        headers["Accept-Encoding"] = upstream_accept_encoding(accept) if may_rewrite else accept
    # Each proxy appends the peer it received the request from: behind a trusted proxy that is the
    # proxy's address, not the client address the gateway reads from the chain.
    peer = request.remote or ""
    prior = ", ".join(request.headers.getall("x-forwarded-for", ()))
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = url_map.forwarded_proto
    headers["X-Forwarded-Host"] = url_map.forwarded_host  # not request.host: the client chose that
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
            if names_gateway_cookie(value):
                continue  # the target can never overwrite (or shadow) the gateway's session cookie
            value = rewrite_set_cookie(value, url_map)
        headers.add(name, value)
    return headers


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
    headers = upstream_headers(request, may_rewrite=True, url_map=url_map)
    started = time.perf_counter()
    try:
        # encoded=True: the client's raw path and query go out byte for byte; parsed, yarl would
        # resolve %2E%2E segments, decode %7E and %3B and upper-case escapes, changing the resource.
        # The session skips aiohttp's invented headers (INVENTED_HEADERS) for every request.
        upstream_cm = session.request(request.method, URL(url, encoded=True), headers=headers,
                                      data=body.chunks() if has_body else None,
                                      allow_redirects=False, auto_decompress=False)
        upstream = await upstream_cm.__aenter__()
    except PayloadTooLarge:
        raise
    except asyncio.CancelledError:
        if _client_gone(request):  # servers run with handler_cancellation cancel on disconnect
            _record_client_gone(call)
        raise
    except Exception as error:  # the forwarding boundary: every failure is mapped once
        if body.exceeded:
            raise PayloadTooLarge(f"request body exceeds {body_limit_bytes} bytes") from error
        if _client_gone(request):  # e.g. the client hung up mid-upload: not the target's failure
            _record_client_gone(call)
            raise ClientDisconnected() from error
        mapped = upstream_error(error, "target")
        metrics.labelled(metrics.UPSTREAM_REQUESTS, "target", str(mapped.outcome)).inc()
        raise mapped from error
    body.upstream = upstream
    call.upstream_s = time.perf_counter() - started
    metrics.labelled(metrics.UPSTREAM_SECONDS, "target").observe(call.upstream_s)
    try:
        return await _stream_back(request, call, upstream, url_map, body)
    finally:
        await upstream_cm.__aexit__(None, None, None)


async def _stream_back(request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                       url_map: UrlMap, body: BodyLimit) -> web.StreamResponse:
    encoding = upstream.headers.get("content-encoding", "identity").strip().lower()
    rewrite = is_rewritable(upstream.headers.get("content-type")) and (
        encoding == "identity" or _decoder(encoding) is not None)
    response = RelayedResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(client_headers(upstream, url_map, rewriting_body=rewrite))
    response.headers.update(call.extra_headers)
    if not rewrite and upstream.content_length is not None:
        response.content_length = upstream.content_length
    call.status = upstream.status
    # From here the status is fixed: failures end the stream and are recorded as the outcome.
    try:
        await response.prepare(request)
        arrived = upstream.content.read_nowait()  # the body bytes already here (often all of it)
        if not arrived:
            await response.write(b"")  # nothing to carry the headers yet: send them alone now
        await _pump(upstream, arrived, response, call, _decoder(encoding) if rewrite else None,
                    BodyRewriter(url_map.body_patterns) if rewrite else None)
        if upstream.status >= 400:  # the target's own refusal or failure, relayed as it was
            call.fail(Outcome.UPSTREAM_ERROR)
    except asyncio.CancelledError:
        if _client_gone(request):  # servers run with handler_cancellation cancel on disconnect
            _record_client_gone(call)
        raise
    except (aiohttp.ClientError, ConnectionResetError, asyncio.TimeoutError, zlib.error) as error:
        if _client_gone(request):
            _record_client_gone(call)
        else:
            call.fail(_failure_outcome(error, body))
            metrics.labelled(metrics.UPSTREAM_REQUESTS, "target", str(call.outcome)).inc()
        _abort(request)
        return response
    metrics.labelled(metrics.UPSTREAM_REQUESTS, "target", str(call.outcome)).inc()
    return response


async def _pump(upstream: aiohttp.ClientResponse, arrived: bytes, response: web.StreamResponse, call: Call,
                decoder: zlib._Decompress | None, rewriter: BodyRewriter | None) -> None:
    """Copy the target's body to the client as it arrives (`arrived`: what was already read),
    decoded and rewritten when asked."""
    chunk = arrived or await upstream.content.readany()
    while chunk:  # readany's b"": the end of the body
        if decoder is not None:
            chunk = decoder.decompress(chunk)
        if rewriter is not None:
            chunk = rewriter.feed(chunk)
        # Even an empty chunk (a gzip header, a prefix the rewriter holds back) is written: the first
        # write sends the held headers, later empty ones cost nothing.
        await response.write(chunk)
        call.bytes_out += len(chunk)  # counted once handed over: a failed write delivered nothing
        chunk = await upstream.content.readany()
    tail = decoder.flush() if decoder is not None else b""
    if rewriter is not None:
        tail = rewriter.feed(tail) + rewriter.flush()
    # The last bytes and a chunked body's end marker in one write.
    await response.write_eof(tail)
    call.bytes_out += len(tail)


def _failure_outcome(error: BaseException, body: BodyLimit) -> Outcome:
    if body.exceeded:
        return PayloadTooLarge.outcome  # the client overran the limit after the target answered
    return upstream_error(error, "target").outcome


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _record_client_gone(call: Call) -> None:
    call.fail(Outcome.CLIENT_DISCONNECTED)
    if not call.bytes_out:
        # Headers leave with the first body bytes, so nothing at all reached the client.
        call.status = CLIENT_CLOSED_REQUEST
    metrics.labelled(metrics.UPSTREAM_REQUESTS, "target", str(call.outcome)).inc()


def _abort(request: web.Request) -> None:
    """A response already started cannot change status: cut the connection so the client sees it."""
    if request.transport is not None:
        request.transport.close()
