"""Prices in real money: what credits cost in a currency, always computed here, never taken from a client."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from ledger.money import MICRO_PER_CREDIT

CENT = Decimal("0.01")
# Stripe's currencies without minor units, and with three (whose amounts end in 0): its docs'
# lists. Every other currency counts in cents.
ZERO_DECIMAL = frozenset(("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                          "VUV", "XAF", "XOF", "XPF"))
THREE_DECIMAL = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))


def amount_for(credits_micro: int, price_per_credit: Decimal, currency: str) -> Decimal:
    """credits × the price of one credit, rounded up to the cent (to the unit where there are no cents)."""
    assert credits_micro > 0 and price_per_credit > 0
    exact = Decimal(credits_micro) * price_per_credit / MICRO_PER_CREDIT
    quantum = Decimal(1) if currency in ZERO_DECIMAL else CENT
    return exact.quantize(quantum, rounding=ROUND_CEILING).quantize(CENT)


def minor_units(amount: Decimal, currency: str) -> int:
    """The amount in the currency's smallest unit, as Stripe counts it (exact: amounts have 2 decimals)."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    units = amount.scaleb(exponent)
    assert units == units.to_integral_value(), (amount, currency)
    return int(units)


def from_minor_units(units: int, currency: str) -> Decimal:
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return Decimal(units).scaleb(-exponent)


def money_text(amount: Decimal) -> str:
    """'12.50': how an amount is shown and sent (two decimals, a dot)."""
    return str(amount.quantize(CENT))
