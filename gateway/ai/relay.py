"""Relaying an AI upstream's answer (JSON or SSE) to the client while metering it.

A stream's events from the upstream's final report on are held back until the call is settled,
so a client that has seen the end sees its charge too. A stream whose client leaves is read on to
the provider's usage report, bounded by TOLLGATE_AI_DRAIN_TIMEOUT_S and by the hold; without a
report the call is charged a conservative estimate (estimates.py, decision 0011).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
from aiohttp import web

from gateway.ai import estimates, provider_errors, settlement
from gateway.ai import usage as usage_mod
from gateway.ai.pricing import cost_micro
from gateway.ai.resources import Services
from gateway.ai.sse import FRAME_BYTES_MAX_DEFAULT, SseDecoder, SseEvent, SseFrameTooLarge
from gateway.core.app_keys import STOPPING
from gateway.core.call import Call
from gateway.core.errors import RateLimited, UpstreamUnreachable
from gateway.core.failures import upstream_error
from gateway.core.outcomes import Outcome

log = logging.getLogger(__name__)

# Upstream response headers the client may see; upstream rate-limit headers describe our account.
RETURNED_HEADERS = ("content-type", "cache-control")
METERS = {"chat": usage_mod.OpenAIChatMeter, "completions": usage_mod.OpenAIChatMeter,
          "responses": usage_mod.OpenAIResponsesMeter, "messages": usage_mod.AnthropicMeter,
          "generate": usage_mod.GeminiMeter}
JSON_USAGE = {"openai": lambda body: usage_mod.from_openai(body.get("usage")),
              "anthropic": lambda body: usage_mod.from_anthropic(body.get("usage")),
              "gemini": lambda body: usage_mod.from_gemini(body.get("usageMetadata"))}
UPSTREAM_STREAM_FAILURES = (asyncio.TimeoutError, aiohttp.ClientError, SseFrameTooLarge)


async def relay(ai: Services, request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                drop_usage_chunk: bool) -> web.StreamResponse:
    """Relay the upstream's answer, metering it; the upstream connection is released to the pool
    when read to its end, closed otherwise (a half-read answer must not be reused)."""
    started = time.perf_counter() - call.upstream_s  # when the request went out
    try:
        if upstream.status >= 400 or not call.spec.stream:
            return await _relay_whole(call, upstream, started, ai.settings.ai_answer_max_bytes)
        if upstream.content_type != "text/event-stream":
            # A stream request answered some other way: the SDK would see an empty stream.
            call.fail(Outcome.UPSTREAM_ERROR)
            raise UpstreamUnreachable(f"the {call.spec.provider} upstream answered a stream request without a stream")
        return await _relay_stream(ai, request, call, upstream, drop_usage_chunk)
    finally:
        if upstream.content.at_eof():
            upstream.release()
        else:
            upstream.close()


async def _relay_whole(call: Call, upstream: aiohttp.ClientResponse, started: float,
                       answer_max_bytes: int) -> web.Response:
    try:
        data = await _read_bounded(upstream, answer_max_bytes)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise upstream_error(error, call.spec.provider) from error
    call.upstream_s = time.perf_counter() - started
    if upstream.status in (401, 403):
        # Our upstream credential was refused: not the client's key, so not the client's 401.
        call.fail(Outcome.UPSTREAM_ERROR)
        log.error("the %s upstream refused our credential (%d)", call.spec.provider, upstream.status)
        raise UpstreamUnreachable(f"the {call.spec.provider} upstream refused the gateway's credential",
                                  code="upstream_credential_refused")
    if upstream.status == 429:
        # Our upstream account is rate limited; its message may name our organisation.
        call.fail(Outcome.UPSTREAM_ERROR)
        raise RateLimited(f"the {call.spec.provider} upstream is busy, retry shortly", code="upstream_rate_limited",
                          headers={"Retry-After": upstream.headers.get("retry-after", "1")})
    if upstream.status >= 400:
        call.fail(Outcome.UPSTREAM_ERROR)  # the provider's own error, relayed; nothing charged
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
    content = upstream.content
    if content.is_eof():
        # The common case: the whole answer came with its head. Taken in one piece, read once.
        data = content.read_nowait()
        if len(data) > limit:
            raise UpstreamUnreachable(f"the upstream answer exceeds {limit} bytes", code="upstream_answer_too_large")
        return data
    chunks, size = [], 0
    async for chunk in content.iter_any():
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


async def _relay_stream(ai: Services, request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                        drop_usage_chunk: bool) -> web.StreamResponse:
    """Relay events as they come, metering each; settle before the final events go out."""
    spec = call.spec
    # An event can echo the whole request (Responses' `instructions`) or carry an inline image.
    stream = _Stream(spec.kind, max(FRAME_BYTES_MAX_DEFAULT, 2 * ai.settings.ai_body_max_bytes),
                     drop_usage_chunk)
    response = web.StreamResponse(status=upstream.status)
    call.status = upstream.status  # fixed once the stream starts, whatever happens after
    response.headers["content-type"] = upstream.headers.get("content-type", "text/event-stream")
    response.headers["cache-control"] = "no-cache"
    call.charge = True  # from here on, whatever the upstream produced is paid for
    cancelled: asyncio.CancelledError | None = None
    try:
        listening = await _relay(request, response, call, upstream, stream)
    except asyncio.CancelledError as error:
        # aiohttp cancels the handler when its client leaves if run with handler_cancellation (its
        # test server is); a shutdown cancels it too. The call is finished all the same.
        listening, cancelled = False, error
    except UPSTREAM_STREAM_FAILURES as error:
        listening = True
        call.fail(Outcome.UPSTREAM_TIMEOUT if isinstance(error, TimeoutError) else Outcome.UPSTREAM_BROKEN)
        stream.tail.append(provider_errors.stream_error_frame(spec.provider, UpstreamUnreachable(
            f"the {spec.provider} upstream broke off the stream"), call.request_id))
    if not listening:
        # Cut by a stopping gateway (past the grace, or its client left meanwhile): settled for
        # what was metered at once, with no drain that would outlast the shutdown's bound.
        stopping = request.app[STOPPING].is_set()
        call.fail(Outcome.SHUTDOWN if stopping else Outcome.CLIENT_DISCONNECTED)
        try:
            # Shielded, so a cancellation on disconnect does not stop it. Cancelled again (a
            # shutdown), the caller settles what was metered by then; forwarding's cleanup closes
            # the upstream, which ends the drain, whose own settlement then finds the call settled.
            drain_s = 0.0 if stopping else ai.settings.ai_drain_timeout_s
            await asyncio.shield(_finish_unheard(ai, call, upstream, stream, drain_s))
        finally:
            if not call.settled:
                call.usage, call.usage_source = stream.usage(call)
        if cancelled is not None:
            raise cancelled
        return response
    call.usage, call.usage_source = stream.usage(call)
    await asyncio.shield(settlement.settle_logged(ai, call))
    try:
        await response.write_eof(b"".join(stream.tail))  # the held-back events and the stream's end: one write
    except ConnectionResetError:
        call.fail(Outcome.CLIENT_DISCONNECTED)
    return response


async def _relay(request: web.Request, response: web.StreamResponse, call: Call,
                 upstream: aiohttp.ClientResponse, stream: _Stream) -> bool:
    """Relay the whole stream; False as soon as the client is found gone (its events are metered)."""
    try:
        await response.prepare(request)
    except ConnectionResetError:
        return False
    async for chunk in upstream.content.iter_any():
        if not await _relay_events(response, stream.decoder.feed(chunk), stream):
            return False
    return await _relay_events(response, stream.decoder.close(), stream)


async def _relay_events(response: web.StreamResponse, events: list[SseEvent], stream: _Stream) -> bool:
    out: list[bytes] = []
    meter = stream.meter
    drop_usage_chunk = stream.drop_usage_chunk
    for event in events:
        payload = meter.feed(event)  # each event parsed once: the meter's payload serves the check below
        if drop_usage_chunk and usage_mod.is_usage_only(payload):
            continue
        (stream.tail if meter.finished else out).append(event.raw)
    if out:
        try:
            await response.write(b"".join(out))
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError included
            return False
    return True


async def _finish_unheard(ai: Services, call: Call, upstream: aiohttp.ClientResponse, stream: _Stream,
                          drain_s: float) -> None:
    """The client left: read the upstream on to its usage report (for up to drain_s), then settle."""
    if drain_s > 0:
        await _drain(upstream, call, stream, drain_s)
    call.usage, call.usage_source = stream.usage(call)
    await settlement.settle_logged(ai, call)


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
