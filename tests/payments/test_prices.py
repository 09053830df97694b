"""Prices in real money: credits times the price of a credit, rounded up to the currency's unit, exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.payments import prices


@pytest.mark.parametrize("credits_micro, price, currency, amount", [
    (10_000_000, "1.00", "USD", "10.00"),
    (10_000_000, "95.00", "RUB", "950.00"),
    (1, "1.00", "USD", "0.01"),            # a micro-credit still costs a cent: rounded up, never to zero
    (1_500_000, "0.99", "EUR", "1.49"),    # 1.485 rounds up
    (3_333_333, "0.30", "USD", "1.00"),
    (10_000_000, "150", "JPY", "1500.00"),
    (1_234_567, "150", "JPY", "186.00"),   # no minor unit: whole yen, up
    (10**15, "999999999.99", "USD", "999999999990000000.00"),
])
def test_an_amount_is_credits_times_the_price_rounded_up(credits_micro, price, currency, amount):
    assert prices.amount_for(credits_micro, Decimal(price), currency) == Decimal(amount)


@pytest.mark.parametrize("amount, currency, units", [("10.00", "USD", 1000), ("1500.00", "JPY", 1500),
                                                     ("1.25", "KWD", 1250), ("0.01", "EUR", 1)])
def test_minor_units_are_exact_both_ways(amount, currency, units):
    assert prices.minor_units(Decimal(amount), currency) == units
    assert prices.from_minor_units(units, currency) == Decimal(amount)


def test_money_is_shown_with_two_decimals():
    assert prices.money_text(Decimal("10")) == "10.00" and prices.money_text(Decimal("950.5")) == "950.50"
