"""Plan settings read once: requests per minute by plan, and access-token prices by duration."""

from __future__ import annotations

from typing import Mapping

PLANS = ("free", "premium", "enterprise")
DEFAULT_PLAN_LIMITS_PER_MIN = {"free": 100, "premium": 500, "enterprise": 0}


def parse_plan_limits(raw: str | Mapping) -> dict[str, int]:
    """'free=50' -> the defaults with free replaced; a plan left out keeps its default, never 0."""
    items = raw.items() if isinstance(raw, Mapping) else (
        item.partition("=")[::2] for item in str(raw).split(",") if item.strip())
    limits = dict(DEFAULT_PLAN_LIMITS_PER_MIN)
    for name, number in items:
        name = str(name).strip()
        if name not in PLANS:
            raise ValueError(f"unknown plan {name!r}")
        limits[name] = int(number)
        if limits[name] < 0:
            raise ValueError("limits must be >= 0")
    return limits


DEFAULT_TOKEN_PRICES = {1: "1", 12: "10", 24: "18", 168: "100", 720: "300"}


def parse_token_prices(raw: str | Mapping) -> dict[int, int]:
    """'1=1,24=18.5' or {"1": "1"} -> {hours: price in micro-credits}; replaces the whole table."""
    from ledger.money import MoneyError, parse_credits

    items = raw.items() if isinstance(raw, Mapping) else (
        item.partition("=")[::2] for item in str(raw).split(",") if item.strip())
    prices: dict[int, int] = {}
    for hours, price in items:
        hours = int(str(hours).strip())
        if not 0 < hours <= 24 * 366:
            raise ValueError(f"token duration {hours} h out of range")
        try:
            prices[hours] = parse_credits(str(price).strip())
        except MoneyError as error:
            raise ValueError(str(error)) from error
        if prices[hours] <= 0:
            raise ValueError("token prices must be positive")
    if not prices:
        raise ValueError("at least one token price is needed")
    return prices
