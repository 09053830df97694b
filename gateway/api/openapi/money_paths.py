"""The OpenAPI paths of payments: checkout, the payer's payments, where providers send the payer
back, and the providers' callbacks (verified by their signatures; see decision 0017)."""

from __future__ import annotations

from gateway.api.openapi.schemas import (AMOUNT, BOOLEAN, EMAIL, ID, PAGE, TEXT, Schema, answer, json_body, listing,
                                         obj, operation, path_id, query, ref)

ROBOKASSA = obj({"OutSum": TEXT, "InvId": TEXT, "SignatureValue": TEXT})
RECEIVED = obj({"received": BOOLEAN}, {"ignored": BOOLEAN, "payment_id": ID, "status": TEXT})
FORM = "application/x-www-form-urlencoded"


def callback(summary: str, responses: dict[int, Schema], body: Schema | None = None, **extra) -> Schema:
    return operation(summary, "payments", responses, security=None, body=body, **extra)


PATHS: dict[str, dict[str, Schema]] = {
    "/api/v1/currency/purchase": {"post": operation(
        "Buy credits (or a bundle's price in credits) through a payment provider", "payments",
        {201: answer("the payment, with the provider's payment URL", ref("Payment"))}, security=None,
        description="With a bearer the credits go to your account; a guest gives an email instead.",
        body=json_body(obj({"provider": {"enum": ["stripe", "cryptocloud", "robokassa"]}},
                           {"credits": AMOUNT, "bundle_id": ID, "currency": {"type": "string", "maxLength": 3},
                            "email": EMAIL}, closed=True)))},
    "/api/v1/payments": {"get": operation(
        "Your payments (admins: everyone's)", "payments", {200: answer("payments", listing(ref("Payment"),
                                                                                          paged=True))},
        parameters=[query("status", {"enum": ["pending", "paid", "failed", "expired", "refunded",
                                              "partially_refunded"]}), *PAGE])},
    "/api/v1/payments/{payment_id}": {"get": operation(
        "A payment with its status history", "payments", {200: answer("the payment", ref("Payment"))},
        parameters=[path_id("payment_id")])},
    "/api/v1/payments/return/{outcome}": {
        method: callback("Where a provider sends the payer back (it only tells; credits come from the callback)",
                         {200: answer("a page", TEXT, "text/html")},
                         parameters=[{"name": "outcome", "in": "path", "required": True,
                                      "schema": {"enum": ["success", "fail"]}}])
        for method in ("get", "post")},
    "/api/v1/webhooks/stripe": {"post": callback(
        "Stripe's webhook (Stripe-Signature)", {200: answer("taken", RECEIVED)},
        body={"required": True, "content": {"application/json": {"schema": obj()}}},
        parameters=[{"name": "Stripe-Signature", "in": "header", "required": True, "schema": TEXT}])},
    "/api/v1/webhooks/cryptocloud": {"post": callback(
        "CryptoCloud's postback (a signed JWT in `token`)", {200: answer("taken", RECEIVED)},
        body={"required": True, "content": {"application/json": {"schema": obj()}, FORM: {"schema": obj()}}})},
    "/api/v1/webhooks/robokassa/result": {
        "post": callback("Robokassa's ResultURL (SignatureValue)", {200: answer("OK{InvId}", TEXT, "text/plain")},
                         body={"required": True, "content": {FORM: {"schema": ROBOKASSA}}}),
        "get": callback("Robokassa's ResultURL by GET", {200: answer("OK{InvId}", TEXT, "text/plain")},
                        parameters=[query(name, TEXT) for name in ("OutSum", "InvId", "SignatureValue")])},
}
