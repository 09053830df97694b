"""A fake Stripe: Checkout Sessions over its REST shapes, and webhooks signed as Stripe signs them.

API: `POST /v1/checkout/sessions` (form-encoded, Bearer key, Idempotency-Key honoured),
`GET /v1/checkout/sessions/{id}`. Pay page `GET|POST /pay/{id}`: the session completes and
`checkout.session.completed` is sent; `?async=1` completes it unpaid and then sends
`checkout.session.async_payment_succeeded`; `?deliver=0` sends nothing. `POST /_fake/sessions/{id}/refund?amount=N`
sends `charge.refunded` (N minor units, cumulative; default all); `POST /_fake/sessions/{id}/expire`
sends `checkout.session.expired`. Events go to `webhook_url`, signed with `webhook_secret` by
`stripe.WebhookSignature.generate_signature_header`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import stripe
from aiohttp import web

from devkit.fake_payments.delivery import Delivered, post


class FakeStripe:
    def __init__(self, *, api_key: str, webhook_secret: str, public_base_url: str = "", webhook_url: str = "") -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.public_base_url, self.webhook_url = public_base_url, webhook_url
        self.sessions: dict[str, dict[str, Any]] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.delivered: list[Delivered] = []

    def event(self, kind: str, thing: dict[str, Any]) -> bytes:
        return json.dumps({"id": "evt_" + secrets.token_hex(12), "object": "event", "type": kind,
                           "created": int(time.time()), "data": {"object": thing}}).encode()

    def sign(self, body: bytes, timestamp: int | None = None, secret: str | None = None) -> str:
        return stripe.WebhookSignature.generate_signature_header(body.decode(), secret or self.webhook_secret,
                                                                 timestamp=timestamp)

    async def send(self, kind: str, thing: dict[str, Any]) -> Delivered:
        body = self.event(kind, thing)
        delivered = await post(self.webhook_url, data=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": self.sign(body)})
        self.delivered.append(delivered)
        return delivered

    def charge(self, session: dict[str, Any], refunded: int) -> dict[str, Any]:
        return {"id": "ch_" + session["id"][8:], "object": "charge", "amount": session["amount_total"],
                "amount_refunded": refunded, "currency": session["currency"], "refunded": True,
                "payment_intent": session["payment_intent"], "metadata": session["metadata"]}

    async def pay(self, session: dict[str, Any], *, asynchronous: bool, deliver: bool) -> list[Delivered]:
        session.update(status="complete", payment_intent="pi_" + secrets.token_hex(12),
                       payment_status="unpaid" if asynchronous else "paid")
        sent = [await self.send("checkout.session.completed", dict(session))] if deliver else []
        if asynchronous:
            session["payment_status"] = "paid"
            if deliver:
                sent.append(await self.send("checkout.session.async_payment_succeeded", dict(session)))
        return sent


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"type": "invalid_request_error", "message": message}}, status=status)


def build_app(fake: FakeStripe) -> web.Application:
    routes = web.RouteTableDef()

    def authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {fake.api_key}"

    @routes.post("/v1/checkout/sessions")
    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return _error(401, "Invalid API Key provided")
        form = await request.post()
        key = request.headers.get("Idempotency-Key")
        if key in fake.by_idempotency_key:
            return web.json_response(fake.sessions[fake.by_idempotency_key[key]])
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {"id": session_id, "object": "checkout.session", "mode": form.get("mode"),
                   "url": f"{fake.public_base_url}/pay/{session_id}", "status": "open", "payment_status": "unpaid",
                   "amount_total": int(str(form["line_items[0][price_data][unit_amount]"])),
                   "currency": form["line_items[0][price_data][currency]"],
                   "client_reference_id": form.get("client_reference_id"), "payment_intent": None,
                   "customer_email": form.get("customer_email"),
                   "metadata": {"payment_id": form.get("metadata[payment_id]")}}
        fake.sessions[session_id] = session
        if key:
            fake.by_idempotency_key[key] = session_id
        return web.json_response(session)

    @routes.get("/v1/checkout/sessions/{session_id}")
    async def retrieve(request: web.Request) -> web.Response:
        if not authorized(request):
            return _error(401, "Invalid API Key provided")
        session = fake.sessions.get(request.match_info["session_id"])
        return web.json_response(session) if session else _error(404, "No such checkout.session")

    @routes.route("*", "/pay/{session_id}")
    async def pay(request: web.Request) -> web.Response:
        session = fake.sessions.get(request.match_info["session_id"])
        if session is None or session["status"] != "open":
            return _error(404, "No open checkout.session")
        sent = await fake.pay(session, asynchronous=request.query.get("async") == "1",
                              deliver=request.query.get("deliver") != "0")
        return web.json_response({"paid": True, "session": session["id"],
                                  "webhooks": [{"status": d.status, "body": d.body} for d in sent]})

    @routes.post("/_fake/pay-latest")
    async def pay_latest(request: web.Request) -> web.Response:
        open_ids = [sid for sid, session in fake.sessions.items() if session["status"] == "open"]
        if not open_ids:
            return _error(404, "no open checkout.session")
        sent = await fake.pay(fake.sessions[open_ids[-1]], asynchronous=False, deliver=True)
        return web.json_response({"paid": True, "session": open_ids[-1],
                                  "webhooks": [{"status": d.status, "body": d.body} for d in sent]})

    @routes.post("/_fake/sessions/{session_id}/{action}")
    async def control(request: web.Request) -> web.Response:
        session = fake.sessions.get(request.match_info["session_id"])
        if session is None:
            return _error(404, "No such checkout.session")
        if request.match_info["action"] == "expire":
            session["status"] = "expired"
            delivered = await fake.send("checkout.session.expired", dict(session))
        else:
            refunded = int(request.query.get("amount", session["amount_total"]))
            delivered = await fake.send("charge.refunded", fake.charge(session, refunded))
        return web.json_response({"status": delivered.status, "body": delivered.body})

    app = web.Application()
    app.add_routes(routes)
    return app
