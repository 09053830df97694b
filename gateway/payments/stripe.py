"""Stripe: Checkout Sessions over its REST API, webhooks verified as Stripe signs them.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`: HMAC-SHA256 keyed with the whole `whsec_…` secret
over `<t>.<raw body>`; any v1 may match (several while a secret rolls), v0 and other schemes are
ignored; the timestamp must be within 300 s of now, in both directions. A session credits when
`checkout.session.completed` says `payment_status == "paid"`, or on `async_payment_succeeded`;
the credit is keyed on the session id (cs_…), so both events of one payment credit once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import aiohttp
import orjson

from gateway.core.config import Settings
from gateway.payments import prices
from gateway.payments.providers import (EXPIRED, FAILED, IGNORED, PAID, PENDING, REFUNDED, Callback,
                                        CallbackRejected, Checkout, Event, Order, call_json, int_field, text_field)

TOLERANCE_S = 300
SESSION_EVENTS = {
    "checkout.session.completed": None,  # paid or pending, by its payment_status
    "checkout.session.async_payment_succeeded": PAID,
    "checkout.session.async_payment_failed": FAILED,
    "checkout.session.expired": EXPIRED,
}
SESSIONS_PATH = "/v1/checkout/sessions"


def signature_of(body: bytes, secret: str, timestamp: str) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str, secret: str, now_s: float, tolerance_s: int = TOLERANCE_S) -> None:
    """Raise CallbackRejected unless `header` signs `body` with `secret` within the tolerance."""
    timestamp, signatures = "", []
    for item in header.split(","):
        scheme, _, value = item.strip().partition("=")
        if scheme == "t":
            timestamp = value
        elif scheme == "v1":
            signatures.append(value.encode("utf-8", "surrogateescape"))
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not signatures:
        raise CallbackRejected("Stripe-Signature has no timestamp or no v1 signature", code="invalid_signature")
    expected = signature_of(body, secret, timestamp).encode()
    # Every candidate is compared (no early exit), each in constant time.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise CallbackRejected("the Stripe-Signature does not match the body", code="invalid_signature")
    if abs(now_s - int(timestamp)) > tolerance_s:
        raise CallbackRejected("the Stripe-Signature timestamp is outside the tolerance", code="stale_signature")


def session_event(session: Any, name: str, status: str | None) -> Event:
    """An event about a Checkout Session (from a webhook, or a re-check's retrieve)."""
    what = f"stripe {name}"
    reference = text_field(session, "id", what)
    if status is None:  # completed: paid now, or an asynchronous method still under way
        status = PAID if session.get("payment_status") == "paid" else PENDING
    currency = text_field(session, "currency", what, 3).upper()
    amount = prices.from_minor_units(int_field(session, "amount_total", what), currency)
    intent = session.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    return Event(status, name, reference=reference, amount=amount, currency=currency,
                 provider_payment=intent if isinstance(intent, str) and 0 < len(intent) <= 200 else None,
                 detail={"payment_status": session.get("payment_status"), "session_status": session.get("status")})


def parse_event(body: bytes) -> Event:
    """A verified webhook body as an Event; event types tollgate does not act on are IGNORED."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise CallbackRejected("the Stripe event is not JSON", code="malformed_callback") from error
    kind = text_field(event, "type", "stripe event", 100)
    data = event.get("data") if isinstance(event, dict) else None
    thing: Any = data.get("object") if isinstance(data, dict) else None
    if kind in SESSION_EVENTS:
        return session_event(thing, kind, SESSION_EVENTS[kind])
    if kind == "charge.refunded":
        what = "stripe charge.refunded"
        intent = text_field(thing, "payment_intent", what)
        charged, refunded = int_field(thing, "amount", what), int_field(thing, "amount_refunded", what)
        if not 0 < refunded <= charged:
            raise CallbackRejected("charge.refunded: amount_refunded out of range", code="malformed_callback")
        currency = text_field(thing, "currency", what, 3).upper()
        metadata = thing.get("metadata")
        order = metadata.get("payment_id") if isinstance(metadata, dict) else None
        return Event(REFUNDED, kind, provider_payment=intent, currency=currency, refunded=(refunded, charged),
                     payment_id=int(order) if isinstance(order, str) and order.isdigit() and len(order) < 19
                     else None, detail={"charge": thing.get("id")})
    return Event(IGNORED, kind)


def idempotency_key(payment_id: int) -> str:
    """One create's key. Stripe answers a key it saw in the last 24 h with its first answer, and a
    payment id comes again after a database is restored (or from another gateway on the same Stripe
    account): a key of the id alone would hand a new buyer a session someone else paid."""
    return f"tollgate-payment-{payment_id}-{secrets.token_hex(16)}"


class Stripe:
    name = "stripe"
    recheckable = True

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings, self._session = settings, session
        self._base = settings.stripe_base_url.rstrip("/")

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._settings.stripe_api_key.value}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key  # a retry of this one create makes one session
        return headers

    async def create(self, order: Order) -> Checkout:
        item = "line_items[0]"
        form = {
            "mode": "payment", "client_reference_id": str(order.payment_id),
            "metadata[payment_id]": str(order.payment_id),
            "payment_intent_data[metadata][payment_id]": str(order.payment_id),
            f"{item}[quantity]": "1", f"{item}[price_data][currency]": order.currency.lower(),
            f"{item}[price_data][unit_amount]": str(prices.minor_units(order.amount, order.currency)),
            f"{item}[price_data][product_data][name]": order.description,
            "success_url": order.return_url + "/success", "cancel_url": order.return_url + "/fail",
        }
        if order.email:
            form["customer_email"] = order.email
        answer = await call_json(self._session, self.name, "POST", self._base + SESSIONS_PATH, data=form,
                                 headers=self._headers(idempotency_key(order.payment_id)),
                                 timeout_s=self._settings.payment_timeout_s)
        return Checkout(text_field(answer, "id", "stripe session"), text_field(answer, "url", "stripe session", 2000))

    def verify(self, callback: Callback, now_s: float) -> None:
        verify_signature(callback.body, callback.headers.get("Stripe-Signature", ""),
                         self._settings.stripe_webhook_secret.value, now_s)

    async def parse(self, callback: Callback) -> Event:
        return parse_event(callback.body)

    async def recheck(self, reference: str) -> Event:
        session = await call_json(self._session, self.name, "GET", f"{self._base}{SESSIONS_PATH}/{reference}",
                                  headers=self._headers(), timeout_s=self._settings.payment_timeout_s)
        state = session.get("status") if isinstance(session, dict) else None
        status = {"complete": None, "expired": EXPIRED}.get(state, PENDING) if isinstance(state, str) else PENDING
        return session_event(session, "recheck", status)
