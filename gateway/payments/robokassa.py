"""Robokassa: a signed payment link (Password #1) and the ResultURL callback (Password #2).

Link: `MerchantLogin:OutSum:InvId[:Receipt]:Password1[:Shp_key=value…]`; ResultURL:
`OutSum:InvId:Password2[:Shp_key=value…]`; the Shp_* pairs sorted by key after the password; the
shop's hash (md5, sha1, sha256, sha384, sha512, ripemd160) in hex, compared without regard to case.
OutSum is hashed exactly as received (it may carry extra decimals) and compared to the payment as
a Decimal. The 54-FZ Receipt is built once as compact JSON, URL-encoded once, and that one string
is both signed and sent as the parameter's value. Robokassa has no status API: payments are
settled by ResultURL only (they are not re-checked). InvId is the payment's own id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal

import orjson

from gateway.core.config import Settings
from gateway.payments import prices
from gateway.payments.providers import PAID, Callback, CallbackRejected, Checkout, Event, Order, text_field

CURRENCY = "RUB"
DESCRIPTION_MAX, ITEM_NAME_MAX = 100, 128
# OutSum as Robokassa sends it: digits, a dot, any number of decimals (hashed as received).
OUT_SUM = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,12})?$")
INV_ID = re.compile(r"^[1-9][0-9]{0,18}$")


def sign(algorithm: str, parts: list[str]) -> str:
    return hashlib.new(algorithm, ":".join(parts).encode()).hexdigest()


def _shp_parts(shp: Mapping[str, str]) -> list[str]:
    return [f"{key}={shp[key]}" for key in sorted(shp)]


def link_signature(algorithm: str, login: str, out_sum: str, inv_id: str, password1: str,
                   receipt: str | None = None, shp: Mapping[str, str] | None = None) -> str:
    """The payment link's SignatureValue; `receipt` is the URL-encoded Receipt as sent."""
    parts = [login, out_sum, inv_id] + ([receipt] if receipt else []) + [password1]
    return sign(algorithm, parts + _shp_parts(shp or {}))


def result_signature(algorithm: str, out_sum: str, inv_id: str, password2: str,
                     shp: Mapping[str, str] | None = None) -> str:
    """ResultURL's SignatureValue (SuccessURL's is the same with Password #1)."""
    return sign(algorithm, [out_sum, inv_id, password2] + _shp_parts(shp or {}))


def encoded_receipt(sno: str, tax: str, name: str, amount: Decimal) -> str:
    """The 54-FZ Receipt with one line (prepaid credits: full prepayment of a service), built once
    as compact JSON and URL-encoded once (PHP's urlencode)."""
    text = (b'{"sno":%s,"items":[{"name":%s,"quantity":1,"sum":%s,"tax":%s,'
            b'"payment_method":"full_prepayment","payment_object":"service"}]}') % (
        orjson.dumps(sno), orjson.dumps(name[:ITEM_NAME_MAX]), prices.money_text(amount).encode(), orjson.dumps(tax))
    return urllib.parse.quote_plus(text.decode(), safe="")


def shp_fields(fields: Mapping[str, object]) -> dict[str, str]:
    return {key: value for key, value in fields.items() if key.lower().startswith("shp_") and isinstance(value, str)}


class Robokassa:
    name = "robokassa"
    recheckable = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def create(self, order: Order) -> Checkout:
        settings = self._settings
        out_sum, inv_id = prices.money_text(order.amount), str(order.payment_id)
        receipt = None
        if settings.robokassa_receipt_sno:
            receipt = encoded_receipt(settings.robokassa_receipt_sno, settings.robokassa_receipt_tax,
                                      order.description, order.amount)
        params = {"MerchantLogin": settings.robokassa_login, "OutSum": out_sum, "InvId": inv_id,
                  "Description": order.description[:DESCRIPTION_MAX], "Culture": "en",
                  "SignatureValue": link_signature(settings.robokassa_hash, settings.robokassa_login, out_sum,
                                                   inv_id, settings.robokassa_password1.value, receipt)}
        if receipt:
            params["Receipt"] = receipt  # its value once the link's own encoding is undone: the signed string
        if order.email:
            params["Email"] = order.email
        if settings.robokassa_test:
            params["IsTest"] = "1"
        return Checkout(inv_id, settings.robokassa_base_url + "?" + urllib.parse.urlencode(params))

    def verify(self, callback: Callback, now_s: float) -> None:
        fields = callback.fields
        out_sum = text_field(fields, "OutSum", "robokassa result", 40)
        inv_id = text_field(fields, "InvId", "robokassa result", 19)
        received = text_field(fields, "SignatureValue", "robokassa result", 256)
        if not OUT_SUM.match(out_sum) or not INV_ID.match(inv_id):
            raise CallbackRejected("robokassa result: OutSum or InvId malformed", code="malformed_callback")
        expected = result_signature(self._settings.robokassa_hash, out_sum, inv_id,
                                    self._settings.robokassa_password2.value, shp_fields(fields))
        if not received.isascii() or not hmac.compare_digest(expected.lower().encode(), received.lower().encode()):
            raise CallbackRejected("the robokassa SignatureValue does not match", code="invalid_signature")

    async def parse(self, callback: Callback) -> Event:
        fields = callback.fields
        return Event(PAID, "result", reference=str(fields["InvId"]), payment_id=int(fields["InvId"]),
                     amount=Decimal(str(fields["OutSum"])), currency=CURRENCY,
                     detail={"is_test": fields.get("IsTest") == "1"})

    async def recheck(self, reference: str) -> Event:
        raise NotImplementedError("robokassa has no status API: its payments are settled by ResultURL")
