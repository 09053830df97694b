"""Payments under test: the fake providers' credentials, the gateway settings that point at them,
and short helpers to buy credits and read what moved."""

from __future__ import annotations

from dataclasses import dataclass

import ledger
from devkit.fake_payments.cryptocloud import FakeCryptoCloud
from devkit.fake_payments.robokassa import FakeRobokassa
from devkit.fake_payments.stripe import FakeStripe

STRIPE_KEY, STRIPE_SECRET = "sk_test_tollgate", "whsec_test_tollgate_secret"
CRYPTOCLOUD_KEY, CRYPTOCLOUD_SHOP, CRYPTOCLOUD_SECRET = "cc-api-key", "shop-1", "cc-project-secret-0123456789abcdef"
ROBOKASSA_LOGIN, ROBOKASSA_PASSWORD1, ROBOKASSA_PASSWORD2 = "tollgate-shop", "pass-one-1", "pass-two-2"
PURCHASE = "/api/v1/currency/purchase"
PRICES = "USD=1.00,RUB=95.00,EUR=0.90,JPY=150"


@dataclass
class Fakes:
    stripe: FakeStripe
    cryptocloud: FakeCryptoCloud
    robokassa: FakeRobokassa
    urls: dict[str, str]

    def settings(self, **changes) -> dict:
        """The gateway settings that switch every provider on, against these fakes."""
        return {
            "credit_prices": PRICES, "stripe_api_key": STRIPE_KEY, "stripe_webhook_secret": STRIPE_SECRET,
            "stripe_base_url": self.urls["stripe"], "cryptocloud_api_key": CRYPTOCLOUD_KEY,
            "cryptocloud_shop_id": CRYPTOCLOUD_SHOP, "cryptocloud_secret": CRYPTOCLOUD_SECRET,
            "cryptocloud_base_url": self.urls["cryptocloud"], "robokassa_login": ROBOKASSA_LOGIN,
            "robokassa_password1": ROBOKASSA_PASSWORD1, "robokassa_password2": ROBOKASSA_PASSWORD2,
            "robokassa_base_url": self.urls["robokassa"] + "/Merchant/Index.aspx",
            "payment_recheck_delay_s": 3600.0, "payment_recheck_interval_s": 3600.0, **changes}

    def point_at(self, gateway_url: str) -> None:
        self.stripe.webhook_url = gateway_url + "/api/v1/webhooks/stripe"
        self.cryptocloud.postback_url = gateway_url + "/api/v1/webhooks/cryptocloud"
        self.robokassa.result_url = gateway_url + "/api/v1/webhooks/robokassa/result"


def new_fakes() -> tuple[FakeStripe, FakeCryptoCloud, FakeRobokassa]:
    return (FakeStripe(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET),
            FakeCryptoCloud(api_key=CRYPTOCLOUD_KEY, shop_id=CRYPTOCLOUD_SHOP, secret=CRYPTOCLOUD_SECRET),
            FakeRobokassa(login=ROBOKASSA_LOGIN, password1=ROBOKASSA_PASSWORD1, password2=ROBOKASSA_PASSWORD2))


async def buy(gateway, headers: dict | None = None, **body) -> dict:
    """A purchase through the API that must succeed (201); its JSON."""
    response = await gateway.post(PURCHASE, json=body, headers=headers or {})
    assert response.status == 201, await response.text()
    return await response.json()


async def deposits(database, user_id: int) -> int:
    """Micro-credits deposited by payments into the user's account."""
    return await database.fetchval(
        "SELECT COALESCE(sum(amount_micro), 0)::bigint FROM transfers WHERE kind = 'deposit' AND user_id = $1",
        user_id)


async def available(database, user_id: int) -> int:
    return (await ledger.balance(database, user_id)).available_micro


async def payment_row(database, payment_id: int):
    return await database.fetchrow("SELECT * FROM payments WHERE id = $1", payment_id)


async def history(database, payment_id: int) -> list[tuple[str, str]]:
    rows = await database.fetch("SELECT status, event FROM payment_history WHERE payment_id = $1 ORDER BY id",
                                payment_id)
    return [(row["status"], row["event"]) for row in rows]
