"""The dev run's fake providers: each provider left unconfigured is served by its fake on loopback,
with secrets made for this run, so `python -m devkit dev` can take money offline."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from devkit.embedded import free_port
from devkit.fake_payments import cryptocloud, robokassa, stripe
from gateway.core import payment_settings
from gateway.core.config import Settings

DEV_CREDIT_PRICES = "USD=1.00,RUB=95.00"


async def _serve(app: web.Application, runners: list[web.AppRunner]) -> str:
    port = free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    runners.append(runner)
    return f"http://127.0.0.1:{port}"


async def start(settings: Settings, runners: list[web.AppRunner]) -> tuple[Settings, dict[str, str]]:
    """Serve a fake for every provider without settings; the settings that point at them, and their URLs."""
    base = settings.public_url.rstrip("/")
    changes: dict[str, Any] = {} if settings.credit_prices else {"credit_prices": DEV_CREDIT_PRICES}
    urls: dict[str, str] = {}
    if not payment_settings.enabled(settings, "stripe"):
        fake_stripe = stripe.FakeStripe(api_key="sk_test_" + secrets.token_hex(12),
                                        webhook_secret="whsec_" + secrets.token_hex(16),
                                        webhook_url=base + "/api/v1/webhooks/stripe")
        urls["stripe"] = fake_stripe.public_base_url = await _serve(stripe.build_app(fake_stripe), runners)
        changes.update(stripe_api_key=fake_stripe.api_key, stripe_webhook_secret=fake_stripe.webhook_secret,
                       stripe_base_url=urls["stripe"])
    if not payment_settings.enabled(settings, "cryptocloud"):
        fake_cc = cryptocloud.FakeCryptoCloud(api_key=secrets.token_hex(12), shop_id="dev-shop",
                                              secret=secrets.token_hex(24),
                                              postback_url=base + "/api/v1/webhooks/cryptocloud")
        urls["cryptocloud"] = fake_cc.public_base_url = await _serve(cryptocloud.build_app(fake_cc), runners)
        changes.update(cryptocloud_api_key=fake_cc.api_key, cryptocloud_shop_id=fake_cc.shop_id,
                       cryptocloud_secret=fake_cc.secret, cryptocloud_base_url=urls["cryptocloud"])
    if not payment_settings.enabled(settings, "robokassa"):
        fake_rk = robokassa.FakeRobokassa(login="dev-shop", password1=secrets.token_hex(8),
                                          password2=secrets.token_hex(8), algorithm=settings.robokassa_hash,
                                          result_url=base + "/api/v1/webhooks/robokassa/result")
        urls["robokassa"] = await _serve(robokassa.build_app(fake_rk), runners)
        changes.update(robokassa_login=fake_rk.login, robokassa_password1=fake_rk.password1,
                       robokassa_password2=fake_rk.password2, robokassa_test=True,
                       robokassa_base_url=urls["robokassa"] + "/Merchant/Index.aspx")
    return settings.replace(**changes), urls
