"""CryptoCloud (API v2): invoices over its REST API, postbacks trusted only after the info endpoint.

A postback (JSON or form) carries `token`, an HS256 JWT signed with the project's secret, valid 5
minutes, naming the invoice (claim `id` or `uuid`, with or without the `INV-` prefix). tollgate
checks its signature and expiry and that it names the postback's invoice, then asks the info
endpoint: only `paid` or `overpaid` credit, and what is credited is the payment's own fiat amount,
never `amount_crypto`; `partial` stays pending.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import jwt

from gateway.core.config import Settings
from gateway.payments import prices
from gateway.payments.providers import (FAILED, PAID, PENDING, Callback, CallbackRejected, Checkout, Event, Order,
                                        ProviderFailed, call_json, text_field)

ALGORITHM = "HS256"
INVOICE = re.compile(r"^(?:INV-)?([A-Z0-9]{4,32})$")
STATUSES = {"paid": PAID, "overpaid": PAID, "partial": PENDING, "created": PENDING, "canceled": FAILED}


def invoice_reference(text: object) -> str | None:
    """'INV-XXXXXXXX' for either spelling of an invoice id, None for anything else."""
    match = INVOICE.match(text.upper()) if isinstance(text, str) and text.isascii() else None
    return f"INV-{match.group(1)}" if match else None


def verify_token(token: object, secret: str, invoice: str, now_s: float) -> None:
    """Raise CallbackRejected unless `token` is the secret's, unexpired, and names `invoice`."""
    try:
        # Expiry is checked against the gateway clock below (tests move it), not by PyJWT.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],  # type: ignore[arg-type]
                            options={"require": ["exp"], "verify_exp": False})
    except Exception as error:  # noqa: BLE001 - any failure to decode attacker bytes means "not theirs"
        raise CallbackRejected("the postback token is not the shop's", code="invalid_signature") from error
    expiry = claims.get("exp")
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry <= now_s:
        raise CallbackRejected("the postback token has expired", code="stale_signature")
    named = invoice_reference(claims.get("id")) or invoice_reference(claims.get("uuid"))
    if named != invoice:
        raise CallbackRejected("the postback token names another invoice", code="invalid_signature")


def invoice_event(invoice: Any, name: str) -> Event:
    what = "cryptocloud invoice"
    reference = invoice_reference(text_field(invoice, "uuid", what))
    status = STATUSES.get(text_field(invoice, "status", what, 40))
    if reference is None or status is None:
        raise ProviderFailed("cryptocloud: an invoice with an unknown id or status")
    order_id = invoice.get("order_id")
    amount, currency = None, invoice.get("fiat_currency")
    if invoice.get("amount_in_fiat") is not None:
        try:
            amount = Decimal(str(invoice["amount_in_fiat"]))
        except InvalidOperation as error:
            raise ProviderFailed("cryptocloud: amount_in_fiat is no number") from error
        if not amount.is_finite():  # a signalling NaN would raise in the comparison with the payment's
            raise ProviderFailed("cryptocloud: amount_in_fiat is no number")
    return Event(status, name, reference=reference, amount=amount,
                 currency=currency if isinstance(currency, str) else None,
                 payment_id=int(order_id) if isinstance(order_id, str) and order_id.isdigit()
                 and len(order_id) < 19 else None,
                 detail={"invoice_status": invoice.get("status")})


class CryptoCloud:
    name = "cryptocloud"
    recheckable = True

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings, self._session = settings, session
        self._base = settings.cryptocloud_base_url.rstrip("/")

    async def _call(self, path: str, body: dict) -> Any:
        headers = {"Authorization": f"Token {self._settings.cryptocloud_api_key.value}"}
        answer = await call_json(self._session, self.name, "POST", self._base + path, json=body, headers=headers,
                                 timeout_s=self._settings.payment_timeout_s)
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise ProviderFailed("cryptocloud did not answer success")
        return answer.get("result")

    async def create(self, order: Order) -> Checkout:
        body: dict[str, Any] = {"shop_id": self._settings.cryptocloud_shop_id,
                                "amount": prices.money_text(order.amount),  # a decimal string, never a float
                                "currency": order.currency, "order_id": str(order.payment_id)}
        if order.email:
            body["email"] = order.email
        result = await self._call("/v2/invoice/create", body)
        reference = invoice_reference(result.get("uuid") if isinstance(result, dict) else None)
        if reference is None:
            raise ProviderFailed("cryptocloud: the new invoice has no id")
        return Checkout(reference, text_field(result, "link", "cryptocloud invoice", 2000))

    def verify(self, callback: Callback, now_s: float) -> None:
        invoice = invoice_reference(callback.fields.get("invoice_id"))
        if invoice is None:
            raise CallbackRejected("the postback names no invoice", code="malformed_callback")
        verify_token(callback.fields.get("token"), self._settings.cryptocloud_secret.value, invoice, now_s)

    async def parse(self, callback: Callback) -> Event:
        """The postback is only a hint: what the invoice is comes from the info endpoint."""
        reference = invoice_reference(callback.fields.get("invoice_id"))
        assert reference is not None, "verify() first"
        event = await self.recheck(reference)
        return Event(event.status, "postback:" + event.name, reference=event.reference, amount=event.amount,
                     currency=event.currency, payment_id=event.payment_id, detail=event.detail)

    async def recheck(self, reference: str) -> Event:
        result = await self._call("/v2/invoice/merchant/info", {"uuids": [reference]})
        for invoice in result if isinstance(result, list) else []:
            if isinstance(invoice, dict) and invoice_reference(invoice.get("uuid")) == reference:
                return invoice_event(invoice, str(invoice.get("status")))
        raise ProviderFailed(f"cryptocloud does not know invoice {reference}")
