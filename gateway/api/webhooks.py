"""/api/v1/webhooks/*: the providers' callbacks, verified as each provider signs them, then settled
once (gateway.payments.settlement). A refused callback is a 400 that credits nothing: counted, logged
and — once its signature is good, so only the provider can cause it — recorded in the audit log or
the payment's history."""

from __future__ import annotations

import logging
import urllib.parse

from aiohttp import web

from gateway.accounts import audit
from gateway.api.web_auth import now
from gateway.core import metrics
from gateway.core.app_keys import CLOCK, DATABASE, SETTINGS
from gateway.core.errors import BadRequest
from gateway.core.json_body import json_response, parse_object, read_bytes
from gateway.core.middleware import CALL
from gateway.payments import notices, recheck, settlement
from gateway.payments.providers import IGNORED, REFUNDED, Callback, CallbackRejected, Provider, ProviderDisabled
from gateway.payments.resources import PAYMENTS

log = logging.getLogger(__name__)
FORM_FIELDS_MAX = 64


def _provider(request: web.Request, name: str) -> Provider:
    request[CALL].route = "webhooks"
    provider = request.app[PAYMENTS].providers.get(name)
    if provider is None:
        raise ProviderDisabled(f"{name} is not configured on this gateway")
    return provider


def _form(raw: bytes) -> dict[str, str]:
    """Form fields (a body or a query string); a name given twice is refused, not silently picked."""
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict",
                                       max_num_fields=FORM_FIELDS_MAX)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest("the callback is not a valid form", code="invalid_form") from error
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise BadRequest("a callback field is given twice", code="invalid_form")
    return fields


async def _settle(request: web.Request, provider: Provider, callback: Callback) -> settlement.Settled | None:
    """Verify, read, settle; None for an event tollgate does not act on."""
    services, when = request.app[PAYMENTS], now(request)
    try:
        provider.verify(callback, request.app[CLOCK].now_s())
    except CallbackRejected as error:
        metrics.labelled(metrics.PAYMENT_CALLBACKS, provider.name, "rejected").inc()
        log.warning("%s callback refused: %s", provider.name, error.code)
        raise
    event = await provider.parse(callback)
    if event.status == IGNORED:
        metrics.labelled(metrics.PAYMENT_CALLBACKS, provider.name, "ignored").inc()
        return None
    try:
        payment_id = await settlement.payment_for(services.pool, provider.name, event)
    except CallbackRejected as error:
        metrics.labelled(metrics.PAYMENT_CALLBACKS, provider.name, "rejected").inc()
        await audit.record(request.app[DATABASE], actor_id=None, action="payment.callback_rejected",
                           target_type="payment", target_id=event.reference or event.provider_payment or "",
                           request=request, details={"provider": provider.name, "reason": error.code,
                                                     "event": event.name})
        raise
    if event.status == REFUNDED:
        await recheck.ask_before_refund(services, provider, payment_id, when)
    settled = await settlement.apply(services.pool, provider.name, event, payment_id=payment_id, now=when,
                                     source="callback")
    if settled.rejection is not None:
        metrics.labelled(metrics.PAYMENT_CALLBACKS, provider.name, "rejected").inc()
        raise settled.rejection
    metrics.labelled(metrics.PAYMENT_CALLBACKS, provider.name, "ok" if settled.changed else "replayed").inc()
    settlement.observe(provider.name, settled)
    await notices.mail_guest(services.pool, services.settings, services.mailer, settled, when)
    return settled


def _answer(settled: settlement.Settled | None) -> web.Response:
    if settled is None:
        return json_response({"received": True, "ignored": True})
    return json_response({"received": True, "payment_id": settled.payment.id, "status": settled.payment.status})


async def stripe_webhook(request: web.Request) -> web.Response:
    """POST /api/v1/webhooks/stripe: the raw body is what the signature covers."""
    provider = _provider(request, "stripe")
    body = await read_bytes(request, request.app[SETTINGS].webhook_body_max_bytes)
    return _answer(await _settle(request, provider, Callback(body, request.headers, {})))


async def cryptocloud_webhook(request: web.Request) -> web.Response:
    """POST /api/v1/webhooks/cryptocloud: a JSON or form postback."""
    provider = _provider(request, "cryptocloud")
    body = await read_bytes(request, request.app[SETTINGS].webhook_body_max_bytes)
    fields = parse_object(body) if request.content_type == "application/json" else _form(body)
    return _answer(await _settle(request, provider, Callback(body, request.headers, fields)))


async def robokassa_result(request: web.Request) -> web.Response:
    """POST or GET /api/v1/webhooks/robokassa/result: answers OK{InvId}, also to a duplicate."""
    provider = _provider(request, "robokassa")
    if request.method == "GET":
        raw = request.rel_url.raw_query_string.encode("utf-8", "surrogateescape")
    else:
        raw = await read_bytes(request, request.app[SETTINGS].webhook_body_max_bytes)
    fields = _form(raw)
    settled = await _settle(request, provider, Callback(raw, request.headers, fields))
    assert settled is not None
    return web.Response(text=f"OK{settled.payment.id}", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/webhooks/stripe", stripe_webhook)
    app.router.add_post("/api/v1/webhooks/cryptocloud", cryptocloud_webhook)
    app.router.add_post("/api/v1/webhooks/robokassa/result", robokassa_result)
    app.router.add_get("/api/v1/webhooks/robokassa/result", robokassa_result)
