"""A fake CryptoCloud (API v2): invoice create and info, a pay page, and postbacks with an HS256 JWT.

API: `POST /v2/invoice/create` and `POST /v2/invoice/merchant/info` (`Authorization: Token <key>`).
Pay page `GET|POST /pay/{id}`: `?status=paid|overpaid|partial|canceled` (default paid) sets the
invoice's status and sends the postback to `postback_url` (JSON, or a form with `postback_format =
"form"`); `?deliver=0` sends none. The postback's `token` is signed with `secret`, valid 5 minutes,
naming the invoice in its `id` claim.
"""

from __future__ import annotations

import secrets
import string
import time
import urllib.parse
from typing import Any

import jwt
import orjson
from aiohttp import web

from devkit.fake_payments.delivery import Delivered, post

TOKEN_TTL_S = 300


class FakeCryptoCloud:
    def __init__(self, *, api_key: str, shop_id: str, secret: str, public_base_url: str = "",
                 postback_url: str = "", postback_format: str = "json") -> None:
        self.api_key, self.shop_id, self.secret = api_key, shop_id, secret
        self.public_base_url, self.postback_url, self.postback_format = public_base_url, postback_url, postback_format
        self.invoices: dict[str, dict[str, Any]] = {}  # by the id without INV-
        self.delivered: list[Delivered] = []

    def token(self, invoice_id: str, *, secret: str | None = None, expires_s: float | None = None,
              claim: str = "id") -> str:
        expiry = int(time.time() + TOKEN_TTL_S) if expires_s is None else int(expires_s)
        return jwt.encode({claim: invoice_id, "exp": expiry}, secret or self.secret, algorithm="HS256")

    def postback(self, invoice: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        invoice_id = invoice["uuid"].removeprefix("INV-")
        return {"status": "success", "invoice_id": invoice_id, "amount_crypto": "0.00042", "currency": "BTC",
                "order_id": invoice["order_id"], "token": token or self.token(invoice_id)}

    async def send(self, fields: dict[str, Any]) -> Delivered:
        if self.postback_format == "form":
            data = urllib.parse.urlencode({k: v for k, v in fields.items() if isinstance(v, str)}).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            data, content_type = orjson.dumps(fields), "application/json"
        delivered = await post(self.postback_url, data=data, headers={"Content-Type": content_type})
        self.delivered.append(delivered)
        return delivered


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"status": "error", "result": {"validate_error": message}}, status=status)


def build_app(fake: FakeCryptoCloud) -> web.Application:
    routes = web.RouteTableDef()

    def authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {fake.api_key}"

    @routes.post("/v2/invoice/create")
    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        if not authorized(request) or body.get("shop_id") != fake.shop_id:
            return _refused(401, "Unauthorized")
        invoice_id = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
        amount = str(body["amount"])
        invoice = {"uuid": f"INV-{invoice_id}", "status": "created", "order_id": body.get("order_id"),
                   "amount": amount, "amount_usd": amount, "amount_in_fiat": amount,
                   "fiat_currency": body.get("currency", "USD"), "received": 0, "received_usd": 0,
                   "link": f"{fake.public_base_url}/pay/{invoice_id}"}
        fake.invoices[invoice_id] = invoice
        return web.json_response({"status": "success", "result": invoice})

    @routes.post("/v2/invoice/merchant/info")
    async def info(request: web.Request) -> web.Response:
        if not authorized(request):
            return _refused(401, "Unauthorized")
        uuids = (await request.json()).get("uuids", [])
        found = [fake.invoices[u.removeprefix("INV-")] for u in uuids if u.removeprefix("INV-") in fake.invoices]
        return web.json_response({"status": "success", "result": found})

    @routes.route("*", "/pay/{invoice_id}")
    async def pay(request: web.Request) -> web.Response:
        invoice = fake.invoices.get(request.match_info["invoice_id"])
        if invoice is None:
            return _refused(404, "no such invoice")
        invoice["status"] = request.query.get("status", "paid")
        sent = await fake.send(fake.postback(invoice)) if request.query.get("deliver") != "0" else None
        return web.json_response({"invoice": invoice["uuid"], "status": invoice["status"],
                                  "postback": {"status": sent.status, "body": sent.body} if sent else None})

    app = web.Application()
    app.add_routes(routes)
    return app
