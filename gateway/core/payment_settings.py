"""Payment settings read once: the price of a credit per currency, and which providers are on.

A provider is on when every one of its settings is set, off when none is; anything between stops
start-up, naming what is missing, so a provider never half-works (decision 0017).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

CURRENCY = re.compile(r"^[A-Z]{3}$")
# Money in a currency: digits, at most two decimals (what every provider here takes).
MONEY = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
PROVIDERS = ("stripe", "cryptocloud", "robokassa")
# The settings each provider needs, all of them (their base URLs have defaults).
REQUIRED = {
    "stripe": ("stripe_api_key", "stripe_webhook_secret"),
    "cryptocloud": ("cryptocloud_api_key", "cryptocloud_shop_id", "cryptocloud_secret"),
    "robokassa": ("robokassa_login", "robokassa_password1", "robokassa_password2"),
}
ROBOKASSA_HASHES = ("md5", "sha1", "sha256", "sha384", "sha512", "ripemd160")
# Robokassa takes rubles only (OutSum is in rubles).
ROBOKASSA_CURRENCY = "RUB"


def parse_credit_prices(raw: str | Mapping[str, Any]) -> dict[str, Decimal]:
    """'USD=1.00,RUB=95' or {"USD": "1.00"} -> {"USD": Decimal("1.00"), ...}; the first is the default."""
    items = raw.items() if isinstance(raw, Mapping) else (
        item.partition("=")[::2] for item in str(raw).split(",") if item.strip())
    prices: dict[str, Decimal] = {}
    for currency, price in items:
        code, text = str(currency).strip().upper(), str(price).strip()
        if not CURRENCY.match(code):
            raise ValueError(f"{currency!r} is no three-letter currency code")
        if not MONEY.match(text):
            raise ValueError(f"price {price!r} of {code}: a decimal with at most 2 decimals")
        try:
            prices[code] = Decimal(text)
        except InvalidOperation as error:
            raise ValueError(f"price {price!r} of {code}") from error
        if prices[code] <= 0:
            raise ValueError(f"price of {code} must be positive")
    return prices


def enabled(settings: Any, provider: str) -> bool:
    return all(_is_set(settings, name) for name in REQUIRED[provider])


def problems(settings: Any, prefix: str) -> list[str]:
    """What is wrong with the payment settings, each naming the setting (empty: all is well)."""
    def named(*names: str) -> str:
        return ", ".join(prefix + name.upper() for name in names)

    found = []
    for provider, names in REQUIRED.items():
        missing = [name for name in names if not _is_set(settings, name)]
        if 0 < len(missing) < len(names):
            found.append(f"{provider} is half configured: set {named(*missing)} as well, or none of {named(*names)}")
        elif not missing and not settings.credit_prices:
            found.append(f"{provider} is configured but {named('credit_prices')} is empty")
    if settings.robokassa_hash not in ROBOKASSA_HASHES:
        found.append(f"{named('robokassa_hash')} must be one of {', '.join(ROBOKASSA_HASHES)}")
    elif settings.robokassa_hash not in hashlib.algorithms_available:  # ripemd160 needs OpenSSL's legacy provider
        found.append(f"{named('robokassa_hash')}: this Python's OpenSSL has no {settings.robokassa_hash}")
    if enabled(settings, "robokassa") and ROBOKASSA_CURRENCY not in settings.credit_prices:
        found.append(f"robokassa takes rubles: {named('credit_prices')} needs a RUB price")
    for name in ("payment_timeout_s", "payment_recheck_delay_s", "payment_recheck_interval_s",
                 "payment_credits_max", "webhook_body_max_bytes"):
        if getattr(settings, name) <= 0:
            found.append(f"{named(name)} must be > 0")
    return found


def _is_set(settings: Any, name: str) -> bool:
    value = getattr(settings, name)
    return bool(value.value if hasattr(value, "value") else value)
