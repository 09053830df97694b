"""One metered AI call: hold the most it can cost, forward, read the usage, post the real cost.

    authenticate key → check IP / model / price → reserve tokens and hold → forward → relay
    (metering) → settle (the usage row written with the charge)

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

import ledger
from gateway.core import metrics
from gateway.ai import relay
from gateway.ai import usage as usage_mod
from gateway.ai import usage_log
from gateway.accounts.api_keys import ApiKeyAuthenticator, KeyPrincipal, Refusal
from gateway.ai.price_table import ModelPrice, PriceTable
from gateway.ai.pricing import cost_micro, max_cost_micro
from gateway.ai.providers import Upstream
from gateway.ai.routes import CallSpec, input_bound
from gateway.ai.usage_log import UsageLog, UsageRow
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.errors import Forbidden, GatewayError, NotFound, PaymentRequired, RateLimited, Unauthenticated

log = logging.getLogger(__name__)

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
    input_tokens_bound: int = 0   # the prompt's bound, held (and the estimate's input, decision 0011)
    output_tokens_bound: int = 0  # the output bound, held
    tpm_window: str | None = None  # the tokens-per-minute counter holding this call's reservation
    tpm_reserved: int = 0


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
    """Reserve the most this call can use: its tokens against the key's TPM limit, then its cost
    on the user's account. No hold, no forward."""
    price = call.price
    assert price is not None
    output_bound = call.spec.output_bound
    if output_bound is None:
        output_bound = price.max_output_tokens * call.spec.choices
    call.input_tokens_bound = input_bound(raw_body, body, canonical)
    call.output_tokens_bound = output_bound
    if call.principal.tpm_limit:
        await _reserve_tokens(services, call)
    amount = max(1, max_cost_micro(price.price, call.input_tokens_bound, output_bound))
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


async def _reserve_tokens(services: Services, call: Call) -> None:
    """Count the call's token bound in the key's TPM window now, so calls running at once see each
    other (L8); settlement corrects it to the real tokens."""
    tokens = call.input_tokens_bound + call.output_tokens_bound
    reserved = await services.keys.reserve_tokens(call.principal, tokens)
    if isinstance(reserved, Refusal):
        _refuse(reserved)
    if reserved is not None:  # None: Redis is away and the limits pause (decision 0011)
        call.tpm_window, call.tpm_reserved = reserved, tokens


async def settle(services: Services, call: Call, request_id: str) -> int:
    """Post the real cost (at most the hold) or void the hold, with the call's usage row in the same
    statement; correct the TPM reservation. Returns the charge."""
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
    if call.tpm_window is not None:
        await services.keys.correct_tokens(call.tpm_window, (usage.total if usage else 0) - call.tpm_reserved)
    row = _usage_row(services, call, request_id, usage, cost, charged)
    if call.hold is None:
        services.usage.add(row)  # nothing charged: the row goes with the next batch
        return 0
    async with services.pool.acquire() as connection:
        await usage_log.resolve_with_row(connection, key=f"ai:{call.call_id}:settle", hold_id=call.hold.id,
                                         now=row.created_at, post_micro=charged if charged else None,
                                         metadata={"cost_micro": cost, "usage_source": row.usage_source}, row=row)
    services.usage.observe(row)
    return charged


def _usage_row(services: Services, call: Call, request_id: str, usage: usage_mod.Usage | None, cost: int,
               charged: int) -> UsageRow:
    usage = usage or usage_mod.Usage(0, 0, 0)
    return UsageRow(
        request_id, call.principal.key_id, call.principal.user_id, call.spec.provider, call.spec.model or "-",
        usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, cost, charged,
        call.hold.id if call.hold else None, call.outcome, call.spec.stream,
        call.usage_source if call.charge else "none", int((time.perf_counter() - call.started_s) * 1000),
        int(call.upstream_s * 1000), _now(services.clock))


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


async def run(services: Services, request: web.Request, spec: CallSpec, principal: KeyPrincipal,
              body: dict | None, raw: bytes, request_id: str) -> web.StreamResponse:
    """Hold, forward, settle: the settlement runs whatever happens to the forward."""
    call = Call(spec, principal, price_for(services, principal, spec))
    request[LAST_CALL] = call
    try:
        payload, drop_usage_chunk = upstream_body(spec, body)
        if spec.billed:
            await hold(services, call, raw, body, payload)
        return await relay.forward(services, request, call, payload, drop_usage_chunk, request_id,
                                   lambda: _settle_logged(services, call, request_id))
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


