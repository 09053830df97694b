"""A fake Robokassa: the payment page a signed link leads to, which plays the ResultURL callback.

`GET|POST /Merchant/Index.aspx?MerchantLogin&OutSum&InvId&SignatureValue[&Receipt][&Shp_*]…`: the
link's signature is checked as Robokassa documents it (`MerchantLogin:OutSum:InvId[:Receipt]:Password1`,
then the Shp_* pairs sorted), with the Receipt parameter as received; a bad link is a 400 page.
Then the ResultURL callback goes to `result_url` as a form: OutSum (with `?out_sum_decimals=6`,
written with six decimals, as Robokassa may), InvId, SignatureValue (`OutSum:InvId:Password2[:Shp_*]`),
the Shp_* pairs echoed, IsTest, EMail. `?deliver=0` plays nothing.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from decimal import Decimal

from aiohttp import web

from devkit.fake_payments.delivery import Delivered, post


class FakeRobokassa:
    def __init__(self, *, login: str, password1: str, password2: str, algorithm: str = "md5",
                 result_url: str = "") -> None:
        self.login, self.password1, self.password2 = login, password1, password2
        self.algorithm, self.result_url = algorithm, result_url
        self.delivered: list[Delivered] = []
        self.links: list[dict[str, str]] = []

    def digest(self, parts: list[str]) -> str:
        return hashlib.new(self.algorithm, ":".join(parts).encode()).hexdigest()

    def link_is_signed(self, params: dict[str, str]) -> bool:
        shp = [f"{k}={params[k]}" for k in sorted(params) if k.lower().startswith("shp_")]
        receipt = [params["Receipt"]] if "Receipt" in params else []
        parts = [params.get("MerchantLogin", ""), params.get("OutSum", ""), params.get("InvId", "")]
        expected = self.digest(parts + receipt + [self.password1] + shp)
        return params.get("MerchantLogin") == self.login and expected == params.get("SignatureValue", "").lower()

    def result_form(self, params: dict[str, str], out_sum: str | None = None,
                    password2: str | None = None) -> dict[str, str]:
        out_sum = out_sum or params["OutSum"]
        shp = {k: v for k, v in params.items() if k.lower().startswith("shp_")}
        signature = self.digest([out_sum, params["InvId"], password2 or self.password2]
                                + [f"{k}={shp[k]}" for k in sorted(shp)])
        return {"OutSum": out_sum, "InvId": params["InvId"], "SignatureValue": signature.upper(),
                "IsTest": params.get("IsTest", "0"), "EMail": params.get("Email", ""), "Fee": "0.00", **shp}

    async def send(self, form: dict[str, str]) -> Delivered:
        delivered = await post(self.result_url, data=urllib.parse.urlencode(form).encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.delivered.append(delivered)
        return delivered


def build_app(fake: FakeRobokassa) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        controls = {name: params.pop(name, None) for name in ("deliver", "out_sum_decimals")}
        if not fake.link_is_signed(params):
            return web.Response(status=400, text="bad signature: the link does not verify with Password #1")
        fake.links.append(params)
        if controls["deliver"] == "0":
            return web.json_response({"paid": True, "result": None})
        out_sum = None
        if controls["out_sum_decimals"]:
            out_sum = str(Decimal(params["OutSum"]).quantize(Decimal(1).scaleb(-int(controls["out_sum_decimals"]))))
        delivered = await fake.send(fake.result_form(params, out_sum))
        return web.json_response({"paid": True, "result": {"status": delivered.status, "body": delivered.body}})

    app = web.Application()
    app.router.add_route("*", "/Merchant/Index.aspx", page)
    return app
