"""Forwarding a held AI call upstream and relaying its answer (JSON or SSE) while metering it.

A stream whose client leaves is read on to the provider's usage report, bounded by
TOLLGATE_AI_DRAIN_TIMEOUT_S and by the hold; without a report the call is charged a conservative
estimate (estimates.py, decision 0011). Settlement is the caller's (`settle`), run shielded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from gateway.ai import provider_errors
from gateway.ai import estimates
from gateway.ai import usage as usage_mod
from gateway.ai.pricing import cost_micro
from gateway.ai.sse import FRAME_BYTES_MAX_DEFAULT, SseDecoder, SseEvent, SseFrameTooLarge
from gateway.core.errors import RateLimited, UpstreamTimeout, UpstreamUnreachable

if TYPE_CHECKING:
    from gateway.ai.calls import Call, Services

log = logging.getLogger(__name__)

# Client headers an upstream may need; everything else (cookies, our keys) stays here.
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta", "user-agent")
# Upstream response headers the client may see; upstream rate-limit headers describe our account.
RETURNED_HEADERS = ("content-type", "cache-control")
# A whole (non-stream) upstream answer larger than this is refused rather than held in memory.
WHOLE_BODY_MAX = 256 * 1024 * 1024
METERS = {"chat": usage_mod.OpenAIChatMeter, "completions": usage_mod.OpenAIChatMeter,
          "responses": usage_mod.OpenAIResponsesMeter, "messages": usage_mod.AnthropicMeter,
          "generate": usage_mod.GeminiMeter}
JSON_USAGE = {"openai": lambda body: usage_mod.from_openai(body.get("usage")),
              "anthropic": lambda body: usage_mod.from_anthropic(body.get("usage")),
              "gemini": lambda body: usage_mod.from_gemini(body.get("usageMetadata"))}
UPSTREAM_STREAM_FAILURES = (asyncio.TimeoutError, aiohttp.ClientError, SseFrameTooLarge)

Settle = Callable[[], Awaitable[None]]


def upstream_request(services: Services, request: web.Request, call: Call) -> tuple[URL, dict[str, str]]:
    spec = call.spec
    upstream = services.upstreams[spec.provider]
    url = upstream.base_url + spec.upstream_path
    if spec.provider == "gemini" and spec.stream:
        url += "?alt=sse"
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    headers["content-type"] = "application/json"
    secret = upstream.next_key()
    if spec.provider == "openai":
        headers["authorization"] = f"Bearer {secret}"
    elif spec.provider == "anthropic":
        headers["x-api-key"] = secret
        headers.setdefault("anthropic-version", "2023-06-01")
    else:
        headers["x-goog-api-key"] = secret
    # encoded=True: the base is stored encoded and the path is one the route allowed; parsed,
    # yarl would resolve dot segments and decode escapes (C1).
    return URL(url, encoded=True), headers


async def forward(services: Services, request: web.Request, call: Call, payload: bytes, drop_usage_chunk: bool,
                  request_id: str, settle: Settle) -> web.StreamResponse:
    spec = call.spec
    url, headers = upstream_request(services, request, call)
    method = "GET" if spec.kind == "free" and spec.provider == "openai" else "POST"
    started = time.perf_counter()
    try:
        # No redirects: a redirect to another host would carry our upstream key with it.
        upstream = await services.session.request(method, url, headers=headers, allow_redirects=False,
                                                  timeout=services.upstreams[spec.provider].timeout,
                                                  data=payload if method == "POST" else None)
    except asyncio.TimeoutError as error:
        call.outcome = "upstream_timeout"
        raise UpstreamTimeout(f"the {spec.provider} upstream did not answer in time") from error
    except aiohttp.ClientError as error:
        call.outcome = "upstream_unreachable"
        raise UpstreamUnreachable(f"the {spec.provider} upstream is unreachable") from error
    try:
        if upstream.status >= 400 or not spec.stream:
            return await _relay_whole(call, upstream, started)
        if upstream.content_type != "text/event-stream":
            # A stream request answered some other way: the SDK would see an empty stream.
            call.outcome = "upstream_error"
            raise UpstreamUnreachable(f"the {spec.provider} upstream answered a stream request without a stream")
        return await _relay_stream(services, request, call, upstream, started, drop_usage_chunk, request_id, settle)
    finally:
        if upstream.content.at_eof():
            upstream.release()  # back to the pool for the next call
        else:
            upstream.close()  # a half-read answer must not be reused


async def _relay_whole(call: Call, upstream: aiohttp.ClientResponse, started: float) -> web.Response:
    try:
        data = await _read_bounded(upstream, WHOLE_BODY_MAX)
    except asyncio.TimeoutError as error:
        call.outcome = "upstream_timeout"
        raise UpstreamTimeout(f"the {call.spec.provider} upstream did not finish in time") from error
    except aiohttp.ClientError as error:
        call.outcome = "upstream_unreachable"
        raise UpstreamUnreachable(f"the {call.spec.provider} upstream broke off its answer") from error
    call.upstream_s = time.perf_counter() - started
    if upstream.status in (401, 403):
        # Our upstream credential was refused: not the client's key, so not the client's 401.
        call.outcome = "upstream_error"
        log.error("the %s upstream refused our credential (%d)", call.spec.provider, upstream.status)
        raise UpstreamUnreachable(f"the {call.spec.provider} upstream refused the gateway's credential",
                                  code="upstream_credential_refused")
    if upstream.status == 429:
        # Our upstream account is rate limited; its message may name our organisation.
        call.outcome = "upstream_error"
        raise RateLimited(f"the {call.spec.provider} upstream is busy, retry shortly", code="upstream_rate_limited",
                          headers={"Retry-After": upstream.headers.get("retry-after", "1")})
    if upstream.status >= 400:
        call.outcome = "upstream_error"  # the provider's own error, relayed; nothing charged
    elif call.spec.billed and upstream.status < 300:
        call.usage, call.usage_source = whole_usage(call, data)
        call.charge = call.usage is not None
    response = web.Response(body=data, status=upstream.status)
    for name in RETURNED_HEADERS:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    return response


def whole_usage(call: Call, data: bytes) -> tuple[usage_mod.Usage | None, str]:
    """A whole answer's usage: the upstream's report, or an estimate when a JSON answer has none."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, "none"  # not an answer the gateway can read: nothing is charged
    if not isinstance(parsed, dict):
        return None, "none"
    usage = JSON_USAGE[call.spec.provider](parsed)
    if usage is not None:
        return usage, "upstream"
    return _estimate(call, None, usage_mod.answer_text_chars(call.spec.kind, parsed)), "estimated"


def _estimate(call: Call, reported: usage_mod.Usage | None, text_chars: int) -> usage_mod.Usage:
    return estimates.conservative(reported, text_chars, input_bound=call.input_tokens_bound,
                                  output_bound=call.output_tokens_bound, reasoning=call.spec.reasoning)


async def _read_bounded(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise UpstreamUnreachable(f"the upstream answer exceeds {limit} bytes", code="upstream_answer_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class _Stream:
    """One relayed stream: its meter, its decoder, and the events held back until settlement."""

    __slots__ = ("meter", "decoder", "drop_usage_chunk", "tail")

    def __init__(self, kind: str, frame_bytes_max: int, drop_usage_chunk: bool) -> None:
        self.meter = METERS[kind]()
        self.decoder = SseDecoder(frame_bytes_max)
        self.drop_usage_chunk = drop_usage_chunk
        self.tail: list[bytes] = []

    def usage(self, call: Call) -> tuple[usage_mod.Usage | None, str]:
        """The upstream's final report; else an estimate once the upstream produced anything."""
        meter = self.meter
        if meter.usage is not None and meter.finished:
            return meter.usage, "upstream"
        if not meter.started:
            return None, "none"  # nothing but an error (or nothing at all) came: nothing is charged
        return _estimate(call, meter.usage, meter.streamed_output_chars), "estimated"


async def _relay_stream(services: Services, request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                        started: float, drop_usage_chunk: bool, request_id: str,
                        settle: Settle) -> web.StreamResponse:
    """Relay events as they come, metering each. Events from the upstream's final report on are
    held back until the call is settled, so a client that has seen the end sees its charge too."""
    spec = call.spec
    # An event can echo the whole request (Responses' `instructions`) or carry an inline image.
    stream = _Stream(spec.kind, max(FRAME_BYTES_MAX_DEFAULT, 2 * services.settings.ai_body_max_bytes),
                     drop_usage_chunk)
    response = web.StreamResponse(status=upstream.status)
    response.headers["content-type"] = upstream.headers.get("content-type", "text/event-stream")
    response.headers["cache-control"] = "no-cache"
    call.charge = True  # from here on, whatever the upstream produced is paid for
    cancelled: asyncio.CancelledError | None = None
    try:
        listening = await _relay(request, response, call, upstream, stream, started)
    except asyncio.CancelledError as error:
        # aiohttp cancels the handler when its client leaves if run with handler_cancellation (its
        # test server is); a shutdown cancels it too. The call is finished all the same.
        listening, cancelled = False, error
    except UPSTREAM_STREAM_FAILURES as error:
        listening = True
        call.outcome = "upstream_timeout" if isinstance(error, asyncio.TimeoutError) else "upstream_broken"
        stream.tail.append(provider_errors.stream_error_frame(spec.provider, UpstreamUnreachable(
            f"the {spec.provider} upstream broke off the stream"), request_id))
    if not listening:
        call.outcome = "client_disconnected"
        try:
            # Shielded, so a cancellation on disconnect does not stop it. Cancelled again (a
            # shutdown), the caller settles what was metered by then; forwarding's cleanup closes
            # the upstream, which ends the drain, whose own settlement then finds the call settled.
            await asyncio.shield(_finish_unheard(services, call, upstream, stream, settle))
        finally:
            if not call.settled:
                call.usage, call.usage_source = stream.usage(call)
        if cancelled is not None:
            raise cancelled
        return response
    call.usage, call.usage_source = stream.usage(call)
    await asyncio.shield(settle())
    try:
        if stream.tail:
            await response.write(b"".join(stream.tail))
        await response.write_eof()
    except ConnectionResetError:
        call.outcome = "client_disconnected"
    return response


async def _relay(request: web.Request, response: web.StreamResponse, call: Call,
                 upstream: aiohttp.ClientResponse, stream: _Stream, started: float) -> bool:
    """Relay the whole stream; False as soon as the client is found gone (its events are metered)."""
    try:
        await response.prepare(request)
    except ConnectionResetError:
        return False
    async for chunk in upstream.content.iter_any():
        if not call.upstream_s:
            call.upstream_s = time.perf_counter() - started
        if not await _relay_events(response, stream.decoder.feed(chunk), stream):
            return False
    return await _relay_events(response, stream.decoder.close(), stream)


async def _relay_events(response: web.StreamResponse, events: list[SseEvent], stream: _Stream) -> bool:
    out = []
    meter = stream.meter
    for event in events:
        meter.feed(event)
        if stream.drop_usage_chunk and usage_mod.is_openai_usage_only_chunk(event):
            continue
        (stream.tail if meter.finished else out).append(event.raw)
    if out:
        try:
            await response.write(b"".join(out))
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError included
            return False
    return True


async def _finish_unheard(services: Services, call: Call, upstream: aiohttp.ClientResponse, stream: _Stream,
                          settle: Settle) -> None:
    """The client left: read the upstream on to its usage report, then settle."""
    await _drain(upstream, call, stream, services.settings.ai_drain_timeout_s)
    call.usage, call.usage_source = stream.usage(call)
    await settle()


async def _drain(upstream: aiohttp.ClientResponse, call: Call, stream: _Stream, timeout_s: float) -> None:
    """Meter the rest of the stream without relaying it, until the usage report, the end of the
    stream, `timeout_s`, or the point where the hold is spent whatever the report would say."""
    meter = stream.meter
    if meter.finished and meter.usage is not None:
        return
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in upstream.content.iter_any():
                for event in stream.decoder.feed(chunk):
                    meter.feed(event)
                if (meter.finished and meter.usage is not None) or _hold_spent(call, stream):
                    return
            for event in stream.decoder.close():
                meter.feed(event)
    except UPSTREAM_STREAM_FAILURES as error:  # drain timeout included; counted in tollgate_ai_calls
        log.info("call %s: no usage report after its client left (%s); charged an estimate", call.call_id,
                 type(error).__name__)


def _hold_spent(call: Call, stream: _Stream) -> bool:
    """True once what the call certainly used costs the whole hold: reading on could not lower it."""
    if call.hold is None or call.price is None:
        return False
    used = estimates.known_so_far(stream.meter.usage, stream.meter.streamed_output_chars)
    return cost_micro(used, call.price.price) >= call.hold.amount_micro
