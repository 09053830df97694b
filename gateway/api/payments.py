"""/api/v1/currency/purchase and /api/v1/payments: buying credits with money, and the payments made.

The amount is always the server's: credits (or a bundle's price in credits) times the configured
price of a credit in the chosen currency. A bearer buys for their own account; without one, a
guest buys by email (a passwordless account is made at checkout and a login link mailed once paid).
"""

from __future__ import annotations

import html

from aiohttp import web

import ledger
from gateway.accounts import audit, bundles, email_address, login_throttle
from gateway.api.web_auth import current_user, now
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.core.middleware import CALL
from gateway.core.payment_settings import PROVIDERS
from gateway.core.query_params import allow_only, page, query_choice
from gateway.payments import checkout, prices, store
from gateway.payments.providers import ProviderDisabled
from gateway.payments.resources import PAYMENTS

FIELDS = ("credits", "bundle_id", "provider", "currency", "email")


def payment_json(payment: store.Payment, history: list | None = None) -> dict:
    body = {"payment_id": payment.id, "provider": payment.provider, "status": payment.status,
            "amount": prices.money_text(payment.amount), "currency": payment.currency,
            "credits": ledger.format_micro(payment.credits_micro), "bundle_id": payment.bundle_id,
            "payment_url": payment.payment_url, "user_id": payment.user_id,
            "refunded_credits": ledger.format_micro(payment.refunded_micro),
            "created_at": payment.created_at.isoformat(),
            "paid_at": payment.paid_at.isoformat() if payment.paid_at else None}
    if history is not None:
        body["history"] = [{"status": row["status"], "event": row["event"], "at": row["created_at"].isoformat()}
                           for row in history]
    return body


async def _what(request: web.Request, body: dict) -> tuple[int, int | None, str | None]:
    """(credits in micro-credits, bundle id, bundle name) of a purchase: credits or a bundle, not both."""
    if ("credits" in body) == ("bundle_id" in body):
        raise BadRequest("give either credits or bundle_id", code="invalid_purchase")
    if "bundle_id" in body:
        bundle_id = database_id(field(body, "bundle_id", int))
        row = await bundles.one(request.app[DATABASE], bundle_id)
        if row is None or not row["is_active"]:
            raise NotFound("no such bundle", code="bundle_not_found")
        return row["price_micro"], row["id"], row["name"]
    try:
        credits = ledger.parse_credits(field(body, "credits", str))
    except ledger.MoneyError as error:
        raise BadRequest(str(error), code="invalid_amount") from error
    credits_max = request.app[SETTINGS].payment_credits_max
    if not 0 < credits <= credits_max * ledger.MICRO_PER_CREDIT:
        raise BadRequest(f"credits must be above 0 and at most {credits_max}", code="invalid_amount")
    return credits, None, None


async def _buyer(request: web.Request, body: dict) -> tuple[int | None, str | None]:
    """(user id, None) for a bearer; (the guest's account, email) for a guest, who passes the sign-in
    brake first."""
    if "authorization" in request.headers:
        if "email" in body:
            raise BadRequest("email is for guests; a logged-in purchase credits your own account",
                             code="invalid_field")
        return (await current_user(request)).id, None
    await login_throttle.admit(request)
    email = email_address.parse(field(body, "email", str))
    return await checkout.guest_account(request.app[DATABASE], email), email


async def purchase(request: web.Request) -> web.Response:
    """POST /api/v1/currency/purchase {"credits": "10" | "bundle_id": N, "provider", "currency"?, "email"?}"""
    request[CALL].route = "payments"
    body = await read_object(request)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)[:200]}", code="unknown_field")
    name = field(body, "provider", str)
    if name not in PROVIDERS:
        raise BadRequest(f"provider must be one of {', '.join(PROVIDERS)}", code="invalid_provider")
    user_id, guest_email = await _buyer(request, body)
    provider = request.app[PAYMENTS].providers.get(name)
    if provider is None:
        raise ProviderDisabled(f"{name} is not configured on this gateway")
    credits, bundle_id, bundle_name = await _what(request, body)
    settings = request.app[SETTINGS]
    currency = checkout.currency_for(settings, name, field(body, "currency", str, required=False))
    payment = await checkout.start(request.app[DATABASE], settings, provider, credits_micro=credits,
                                   currency=currency, bundle_id=bundle_id, user_id=user_id, guest_email=guest_email,
                                   description=checkout.description(credits, bundle_name), now=now(request),
                                   ip=request[CALL].client_ip)
    return json_response(payment_json(payment), status=201)


async def list_payments(request: web.Request) -> web.Response:
    """GET /api/v1/payments: your own; an admin sees everyone's (audited)."""
    request[CALL].route = "payments"
    user = await current_user(request)
    allow_only(request, "status", "skip", "limit")
    skip, limit = page(request)
    status = query_choice(request, "status", store.STATUSES)
    is_admin = user.role == "admin"
    items, total = await store.page(request.app[DATABASE], user_id=None if is_admin else user.id, status=status,
                                    limit=limit, skip=skip)
    if is_admin:
        await audit.record(request.app[DATABASE], actor_id=user.id, action="payments.list", target_type="payment",
                           request=request, details={"status": status, "skip": skip, "limit": limit})
    return json_response({"items": [payment_json(p) for p in items], "total": total, "skip": skip, "limit": limit})


async def get_payment(request: web.Request) -> web.Response:
    """GET /api/v1/payments/{id} with its history: another user's payment is a 404, like none."""
    request[CALL].route = "payments"
    user = await current_user(request)
    allow_only(request)
    payment_id = database_id(request.match_info["payment_id"])
    database = request.app[DATABASE]
    payment = await store.get(database, payment_id) if payment_id else None
    if payment is None or (payment.user_id != user.id and user.role != "admin"):
        raise NotFound("no such payment", code="payment_not_found")
    if payment.user_id != user.id:
        await audit.record(database, actor_id=user.id, action="payment.view", target_type="payment",
                           target_id=payment.id, request=request)
    return json_response(payment_json(payment, await store.history(database, payment.id)))


RETURN_PAGE = """<!doctype html><meta charset="utf-8"><title>tollgate payment</title>
<p>{text}</p><p><a href="{home}">Back to tollgate</a></p>"""
RETURN_TEXTS = {"success": "Thank you. Your credits arrive as soon as the payment provider confirms the payment.",
                "fail": "The payment was not completed; nothing was charged by tollgate."}


async def return_page(request: web.Request) -> web.Response:
    """Where a provider sends the payer back (Stripe success/cancel, CryptoCloud and Robokassa
    SuccessURL/FailURL): it only tells; credits come from the verified callback alone."""
    request[CALL].route = "payments"
    outcome = request.match_info["outcome"]
    if outcome not in RETURN_TEXTS:
        raise NotFound("no such page")
    home = html.escape(request.app[SETTINGS].public_url)
    return web.Response(text=RETURN_PAGE.format(text=RETURN_TEXTS[outcome], home=home), content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/currency/purchase", purchase)
    app.router.add_get("/api/v1/payments", list_payments)
    app.router.add_get("/api/v1/payments/return/{outcome}", return_page)
    app.router.add_post("/api/v1/payments/return/{outcome}", return_page)
    app.router.add_get("/api/v1/payments/{payment_id}", get_payment)
