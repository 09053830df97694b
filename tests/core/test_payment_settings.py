"""Payment settings: prices per currency read once; a provider is on with all its settings, off with
none, and anything between stops start-up naming what is missing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.core import config, payment_settings
from gateway.core.config import ConfigError, Settings

STRIPE = {"TOLLGATE_STRIPE_API_KEY": "sk_test_1", "TOLLGATE_STRIPE_WEBHOOK_SECRET": "whsec_1"}


def test_credit_prices_are_read_as_decimals_in_order():
    settings = config.load({"TOLLGATE_CREDIT_PRICES": "usd=1.00, RUB=95,EUR=0.9"})
    assert list(settings.credit_prices.items()) == [("USD", Decimal("1.00")), ("RUB", Decimal("95")),
                                                    ("EUR", Decimal("0.9"))]
    assert Settings(credit_prices={"USD": "2.50"}).credit_prices == {"USD": Decimal("2.50")}


@pytest.mark.parametrize("raw", ["USD=1.001", "USD=-1", "USD=0", "US=1", "USD=abc", "USD=1e2", "USD=NaN",
                                 "USD=", "DOLLAR=1"])
def test_a_malformed_price_stops_start_up_naming_the_setting(raw):
    with pytest.raises(ConfigError, match="TOLLGATE_CREDIT_PRICES"):
        config.load({"TOLLGATE_CREDIT_PRICES": raw})


def test_providers_are_off_without_settings_and_on_with_all_of_them():
    assert not any(payment_settings.enabled(Settings(), name) for name in payment_settings.PROVIDERS)
    settings = config.load({**STRIPE, "TOLLGATE_CREDIT_PRICES": "USD=1"})
    assert payment_settings.enabled(settings, "stripe") and not payment_settings.enabled(settings, "robokassa")
    assert repr(settings.stripe_webhook_secret) == "'**********'"


@pytest.mark.parametrize("environ, named", [
    ({"TOLLGATE_STRIPE_API_KEY": "sk_test_1", "TOLLGATE_CREDIT_PRICES": "USD=1"}, "TOLLGATE_STRIPE_WEBHOOK_SECRET"),
    ({"TOLLGATE_CRYPTOCLOUD_SECRET": "s", "TOLLGATE_CREDIT_PRICES": "USD=1"}, "TOLLGATE_CRYPTOCLOUD_API_KEY"),
    (STRIPE, "TOLLGATE_CREDIT_PRICES is empty"),
    ({"TOLLGATE_ROBOKASSA_LOGIN": "shop", "TOLLGATE_ROBOKASSA_PASSWORD1": "a", "TOLLGATE_ROBOKASSA_PASSWORD2": "b",
      "TOLLGATE_CREDIT_PRICES": "USD=1"}, "needs a RUB price"),
    ({"TOLLGATE_ROBOKASSA_HASH": "sha3"}, "TOLLGATE_ROBOKASSA_HASH"),
    ({"TOLLGATE_PAYMENT_RECHECK_INTERVAL_S": "0"}, "TOLLGATE_PAYMENT_RECHECK_INTERVAL_S"),
])
def test_a_half_configured_provider_never_half_works(environ, named):
    with pytest.raises(ConfigError, match=named):
        config.load(environ)
