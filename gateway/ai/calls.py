"""One metered AI call: hold the most it can cost, forward, read the usage, post the real cost.

    authenticate key → check IP / model / price → hold → forward → relay (metering) → settle → log

The hold is placed before any byte goes upstream and is always resolved: posted at the real cost
(never above the hold), or voided when the upstream failed. Settlement is shielded from the
handler's cancellation, and a hold nobody resolves is voided by the expiry sweep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

import ledger
from gateway import metrics
from gateway.ai import errors as ai_errors
from gateway.ai import usage as usage_mod
from gateway.ai.api_keys import ApiKeyAuthenticator, KeyPrincipal, Refusal
from gateway.ai.price_table import ModelPrice, PriceTable
from gateway.ai.pricing import cost_micro, max_cost_micro
from gateway.ai.providers import Upstream
from gateway.ai.routes import CallSpec, input_bound
from gateway.ai.sse import FRAME_BYTES_MAX_DEFAULT, SseDecoder, SseFrameTooLarge
from gateway.ai.usage_log import UsageLog, UsageRow
from gateway.clock import Clock
from gateway.config import Settings
from gateway.errors import (Forbidden, GatewayError, NotFound, PaymentRequired, RateLimited, Unauthenticated,
                            UpstreamTimeout, UpstreamUnreachable)

log = logging.getLogger(__name__)

# Client headers an upstream may need; everything else (cookies, our keys) stays here.
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta", "user-agent")
# Upstream response headers the client may see; upstream rate-limit headers describe our account.
RETURNED_HEADERS = ("content-type", "cache-control")
# A stream cut before the upstream reported usage is charged for its text at this many
# characters per token, rounded down (decision 0011).
CHARS_PER_TOKEN = 4
# A whole (non-stream) upstream answer larger than this is refused rather than held in memory.
WHOLE_BODY_MAX = 256 * 1024 * 1024
METERS = {"chat": usage_mod.OpenAIChatMeter, "completions": usage_mod.OpenAIChatMeter,
          "responses": usage_mod.OpenAIResponsesMeter, "messages": usage_mod.AnthropicMeter,
          "generate": usage_mod.GeminiMeter}
JSON_USAGE = {"openai": lambda body: usage_mod.from_openai(body.get("usage")),
              "anthropic": lambda body: usage_mod.from_anthropic(body.get("usage")),
              "gemini": lambda body: usage_mod.from_gemini(body.get("usageMetadata"))}


LAST_CALL = web.RequestKey("ai_call", object)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    pool: object
    keys: ApiKeyAuthenticator
    prices: PriceTable
    upstreams: dict[str, Upstream]
    session: aiohttp.ClientSession
    usage: UsageLog


@dataclass
class Call:
    """What one call has done so far; read by settlement whatever happened."""

    spec: CallSpec
    principal: KeyPrincipal
    price: ModelPrice | None
    call_id: str = field(default_factory=lambda: os.urandom(16).hex())
    started_s: float = field(default_factory=time.perf_counter)
    upstream_s: float = 0.0
    hold: ledger.Transfer | None = None
    usage: usage_mod.Usage | None = None
    usage_source: str = "none"
    outcome: str = "ok"
    charge: bool = False  # true once the upstream produced something billable
    settled: bool = False


def api_key_of(request: web.Request) -> str:
    """The key from wherever the SDK sends it: Bearer, x-api-key, x-goog-api-key or ?key=."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return (request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
            or request.query.get("key") or "").strip()


async def authorize(services: Services, request: web.Request, client_ip: str) -> KeyPrincipal:
    key = api_key_of(request)
    if not key:
        raise Unauthenticated("missing API key", code="missing_api_key")
    result = await services.keys.authenticate(key)
    if isinstance(result, Refusal):
        _refuse(result)
    if not result.allows_ip(client_ip):
        raise Forbidden("this API key may not be used from this address", code="ip_not_allowed")
    return result


def _refuse(refusal: Refusal) -> None:
    if refusal.state == "rate_limited":
        raise RateLimited(f"rate limit reached ({refusal.limit_name}: {refusal.limit} per minute)",
                          code="rate_limit_exceeded", headers={"Retry-After": str(refusal.retry_after_s)})
    if refusal.state == "disabled":
        raise Forbidden("account disabled", code="account_disabled")
    message = {"revoked": "API key revoked", "expired": "API key expired"}.get(refusal.state, "invalid API key")
    raise Unauthenticated(message, code="invalid_api_key")


def price_for(services: Services, principal: KeyPrincipal, spec: CallSpec) -> ModelPrice | None:
    if not spec.billed:
        return None
    if not principal.allows_model(spec.model):
        raise Forbidden(f"this API key may not use the model {spec.model}", code="model_not_allowed")
    price = services.prices.get(spec.model, spec.provider)
    if price is None:
        raise NotFound(f"The model `{spec.model}` does not exist or is not offered", code="model_not_found")
    return price


def _now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc)


async def hold(services: Services, call: Call, raw_body: bytes, body: dict | None = None,
               canonical: bytes | None = None) -> None:
    """Reserve the most this call can cost; no hold, no forward."""
    price = call.price
    assert price is not None
    output_bound = call.spec.output_bound
    if output_bound is None:
        output_bound = price.max_output_tokens * call.spec.choices
    amount = max(1, max_cost_micro(price.price, input_bound(raw_body, body, canonical), output_bound))
    now = _now(services.clock)
    # No enclosing transaction: the move is one statement that locks, checks and writes at once
    # (decision 0012); the account, if new, is created with a zero balance either way.
    async with services.pool.acquire() as connection:
        account = await ledger.user_account(connection, call.principal.user_id)
        revenue = await ledger.system_id(connection, "revenue")
        try:
            call.hold = await ledger.move(
                connection, key=f"ai:{call.call_id}:hold", debit=account, credit=revenue, amount_micro=amount,
                kind="usage", now=now, user_id=call.principal.user_id,
                description=f"{call.spec.provider} {call.spec.model}",
                hold_until=now + dt.timedelta(seconds=services.settings.ai_hold_ttl_s),
                metadata={"call": call.call_id, "key_id": call.principal.key_id, "model": call.spec.model})
        except ledger.InsufficientBalance as error:
            raise PaymentRequired(
                f"insufficient balance: this call may cost up to {ledger.format_micro(amount)} credits",
                code="insufficient_balance") from error


async def settle(services: Services, call: Call, request_id: str) -> int:
    """Post the real cost (at most the hold) or void the hold; log the usage. Returns the charge."""
    if call.settled:
        return 0
    call.settled = True
    cost = charged = 0
    usage = call.usage if call.charge else None
    if usage is not None and call.price is not None:
        cost = cost_micro(usage, call.price.price)
    if call.hold is not None:
        charged = min(cost, call.hold.amount_micro)
        if cost > charged:
            metrics.AI_UNDERCHARGED.inc(cost - charged)
            log.warning("call %s cost %d above its hold %d", call.call_id, cost, call.hold.amount_micro)
        async with services.pool.acquire() as connection:
            await ledger.resolve(connection, key=f"ai:{call.call_id}:settle", hold_id=call.hold.id,
                                 now=_now(services.clock), post_micro=charged if charged else None,
                                 expiring=True, metadata={"cost_micro": cost, "usage_source": call.usage_source})
    if usage is not None and call.principal.tpm_limit:
        await services.keys.count_tokens(call.principal, usage.total)
    elapsed_ms = int((time.perf_counter() - call.started_s) * 1000)
    usage = usage or usage_mod.Usage(0, 0, 0)
    services.usage.add(UsageRow(
        request_id, call.principal.key_id, call.principal.user_id, call.spec.provider, call.spec.model or "-",
        usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, cost, charged,
        call.hold.id if call.hold else None, call.outcome, call.spec.stream,
        call.usage_source if call.charge else "none", elapsed_ms, int(call.upstream_s * 1000),
        _now(services.clock)))
    return charged


def upstream_request(services: Services, request: web.Request, spec: CallSpec,
                     body: bytes) -> tuple[URL, dict[str, str]]:
    upstream = services.upstreams[spec.provider]
    url = upstream.base_url + spec.upstream_path
    if spec.provider == "gemini" and spec.stream:
        url += "?alt=sse"
    # encoded=True: the base is stored encoded and the path is one the route allowed; parsed,
    # yarl would resolve dot segments and decode escapes (C1).
    url = URL(url, encoded=True)
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
    return url, headers


def upstream_body(spec: CallSpec, body: dict | None) -> tuple[bytes, bool]:
    """The bytes to send, and whether to drop the usage-only chunk the client did not ask for.

    The upstream gets the parsed body serialised again, never the client's bytes: a key given twice
    (at any depth) reaches it once, with the value that was authorised and priced (M4, 0011)."""
    if body is None:
        return b"", False
    if spec.provider == "openai" and spec.stream and spec.kind in ("chat", "completions"):
        changed, asked = usage_mod.with_openai_stream_usage(body)
        return orjson.dumps(changed), not asked
    return orjson.dumps(body), False


async def forward(services: Services, request: web.Request, call: Call, payload: bytes, drop_usage_chunk: bool,
                  request_id: str) -> web.StreamResponse:
    spec = call.spec
    url, headers = upstream_request(services, request, spec, payload)
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
            return await _relay_whole(request, call, upstream, started)
        if upstream.content_type != "text/event-stream":
            # A stream request answered some other way: the SDK would see an empty stream.
            call.outcome = "upstream_error"
            raise UpstreamUnreachable(f"the {spec.provider} upstream answered a stream request without a stream")
        return await _relay_stream(request, call, upstream, started, drop_usage_chunk, request_id, services)
    finally:
        if upstream.content.at_eof():
            upstream.release()  # back to the pool for the next call
        else:
            upstream.close()  # a half-read answer must not be reused


async def _relay_whole(request: web.Request, call: Call, upstream: aiohttp.ClientResponse,
                       started: float) -> web.Response:
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
    elif call.spec.billed:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        call.usage = JSON_USAGE[call.spec.provider](parsed) if isinstance(parsed, dict) else None
        call.charge = call.usage is not None
        call.usage_source = "upstream" if call.charge else "none"
    response = web.Response(body=data, status=upstream.status)
    for name in RETURNED_HEADERS:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    return response


async def _read_bounded(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise UpstreamUnreachable(f"the upstream answer exceeds {limit} bytes", code="upstream_answer_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _relay_stream(request: web.Request, call: Call, upstream: aiohttp.ClientResponse, started: float,
                        drop_usage_chunk: bool, request_id: str, services: Services) -> web.StreamResponse:
    """Relay events as they come, metering each. Events from the upstream's final report on are
    held back until the call is settled, so a client that has seen the end sees its charge too."""
    spec = call.spec
    meter = METERS[spec.kind]()
    # An event can echo the whole request (Responses' `instructions`) or carry an inline image.
    decoder = SseDecoder(max(FRAME_BYTES_MAX_DEFAULT, 2 * services.settings.ai_body_max_bytes))
    response = web.StreamResponse(status=upstream.status)
    response.headers["content-type"] = upstream.headers.get("content-type", "text/event-stream")
    response.headers["cache-control"] = "no-cache"
    tail: list[bytes] = []
    try:
        await response.prepare(request)
        call.charge = True  # from here on, whatever the upstream produced is paid for
        try:
            async for chunk in upstream.content.iter_any():
                if not call.upstream_s:
                    call.upstream_s = time.perf_counter() - started
                await _relay_events(response, decoder.feed(chunk), meter, drop_usage_chunk, tail)
            await _relay_events(response, decoder.close(), meter, drop_usage_chunk, tail)
        except ConnectionResetError:
            raise  # the client left (aiohttp's reset error is also a ClientError): not the upstream
        except (asyncio.TimeoutError, aiohttp.ClientError, SseFrameTooLarge) as error:
            call.outcome = "upstream_timeout" if isinstance(error, asyncio.TimeoutError) else "upstream_broken"
            tail.append(ai_errors.stream_error_frame(spec.provider, UpstreamUnreachable(
                f"the {spec.provider} upstream broke off the stream"), request_id))
        call.usage, call.usage_source = _stream_usage(meter)
        await asyncio.shield(_settle_logged(services, call, request_id))
        if tail:
            await response.write(b"".join(tail))
        await response.write_eof()
    except ConnectionResetError:  # aiohttp.ClientConnectionResetError included
        call.outcome = "client_disconnected"
    finally:
        if not call.settled:  # left before settlement: charge what was produced so far
            call.usage, call.usage_source = _stream_usage(meter)
    return response


async def _relay_events(response: web.StreamResponse, events: list, meter, drop_usage_chunk: bool,
                        tail: list[bytes]) -> None:
    out = []
    for event in events:
        meter.feed(event)
        if drop_usage_chunk and usage_mod.is_openai_usage_only_chunk(event):
            continue
        (tail if meter.finished else out).append(event.raw)
    if out:
        await response.write(b"".join(out))


def _stream_usage(meter) -> tuple[usage_mod.Usage | None, str]:
    """The upstream's report when it arrived; else the text streamed so far (decision 0011)."""
    if meter.usage is not None and meter.finished:
        return meter.usage, "upstream"
    streamed = meter.streamed_output_chars // CHARS_PER_TOKEN
    reported = meter.usage
    if reported is None and streamed == 0:
        return None, "none"
    # Input the upstream already reported (Anthropic's message_start) is owed; output is what was
    # reported or what was streamed, whichever is larger.
    input_tokens = reported.input_tokens if reported else 0
    cached = reported.cached_input_tokens if reported else 0
    output = max(reported.output_tokens if reported else 0, streamed)
    return usage_mod.Usage(input_tokens, cached, output), "streamed"


async def run(services: Services, request: web.Request, spec: CallSpec, principal: KeyPrincipal,
              body: dict | None, raw: bytes, request_id: str) -> web.StreamResponse:
    """Hold, forward, settle: the settlement runs whatever happens to the forward."""
    call = Call(spec, principal, price_for(services, principal, spec))
    request[LAST_CALL] = call
    try:
        payload, drop_usage_chunk = upstream_body(spec, body)
        if spec.billed:
            await hold(services, call, raw, body, payload)
        return await forward(services, request, call, payload, drop_usage_chunk, request_id)
    except GatewayError as error:
        call.charge = False
        if call.outcome == "ok":
            call.outcome = error.outcome
        raise
    except BaseException:
        call.outcome = "error" if call.outcome == "ok" else call.outcome
        raise
    finally:
        await asyncio.shield(_settle_logged(services, call, request_id))


async def _settle_logged(services: Services, call: Call, request_id: str) -> None:
    """A settlement that fails leaves the hold to the expiry sweep: the user is not charged."""
    try:
        await settle(services, call, request_id)
    except Exception:
        log.exception("settling AI call %s failed; its hold will be voided at expiry", call.call_id)


