"""Table and property tests for gateway.ai.pricing: exact integer costs rounded up once per call."""

from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from gateway.ai.pricing import Price, cost_micro, max_cost_micro
from gateway.ai.usage import Usage

# 1 credit = 1_000_000 micro-credits; a price of 2.5 credits per Mtok is 2_500_000 micro per Mtok.
GPT_LIKE = Price(input_per_mtok_micro=2_500_000, output_per_mtok_micro=10_000_000,
                 cached_input_per_mtok_micro=1_250_000)
CHEAP = Price(input_per_mtok_micro=1, output_per_mtok_micro=3, cached_input_per_mtok_micro=0)

COST_CASES = [
    ("nothing used costs nothing", Usage(0, 0, 0), GPT_LIKE, 0),
    ("whole micro-credits need no rounding", Usage(1000, 0, 500), GPT_LIKE, 2_500 + 5_000),
    ("cached input at the cached price", Usage(86, 1920, 300), GPT_LIKE, 5_615),  # 215 + 2400 + 3000 exactly
    ("a fraction rounds up", Usage(1, 0, 0), GPT_LIKE, 3),  # 2.5 -> 3
    ("one token at 1 micro/Mtok is 1 micro", Usage(1, 0, 0), CHEAP, 1),
    ("rounded once, not per part", Usage(1, 0, 1), CHEAP, 1),  # 4e-6 -> 1, not 1 + 1
    ("a free cached price", Usage(0, 10**6, 0), CHEAP, 0),
    ("a million output tokens cost the output price", Usage(0, 0, 10**6), GPT_LIKE, 10_000_000),
]


@pytest.mark.parametrize("usage,price,expected", [c[1:] for c in COST_CASES], ids=[c[0] for c in COST_CASES])
def test_cost_micro(usage, price, expected):
    assert cost_micro(usage, price) == expected


def test_max_cost_bills_the_prompt_estimate_at_the_full_input_price():
    """A hold prices the whole prompt estimate as uncached input plus every allowed output token."""
    assert max_cost_micro(GPT_LIKE, 1000, 500) == cost_micro(Usage(1000, 0, 500), GPT_LIKE) == 7_500


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1", None])
def test_price_accepts_only_non_negative_ints(bad):
    """Floats, bools, strings and negatives are refused: no floats where money moves."""
    with pytest.raises(ValueError):
        Price(bad, 0, 0)


def test_max_cost_refuses_negative_estimates():
    """A negative estimate is a caller bug, refused loudly."""
    with pytest.raises(ValueError):
        max_cost_micro(GPT_LIKE, -1, 10)


# ---------- properties ----------

COUNT = st.integers(0, 10**9)
PRICE_MICRO = st.integers(0, 10**9)
USAGES = st.builds(Usage, COUNT, COUNT, COUNT)
PRICES = st.builds(Price, PRICE_MICRO, PRICE_MICRO, PRICE_MICRO)


def exact_cost(usage: Usage, price: Price) -> Fraction:
    return Fraction(usage.input_tokens * price.input_per_mtok_micro
                    + usage.cached_input_tokens * price.cached_input_per_mtok_micro
                    + usage.output_tokens * price.output_per_mtok_micro, 1_000_000)


@settings(max_examples=200, deadline=None)
@given(USAGES, PRICES)
def test_cost_is_within_one_micro_above_the_exact_value(usage, price):
    """The cost is never below the exact rational cost, and less than 1 micro-credit above it."""
    cost = cost_micro(usage, price)
    assert type(cost) is int
    assert exact_cost(usage, price) <= cost < exact_cost(usage, price) + 1


@settings(max_examples=200, deadline=None)
@given(USAGES, PRICES, st.sampled_from(["input_tokens", "cached_input_tokens", "output_tokens"]), COUNT)
def test_cost_is_monotone_in_each_count(usage, price, field, more):
    """Using more of any kind of token never costs less."""
    counts = {"input_tokens": usage.input_tokens, "cached_input_tokens": usage.cached_input_tokens,
              "output_tokens": usage.output_tokens}
    counts[field] += more
    assert cost_micro(Usage(**counts), price) >= cost_micro(usage, price)


@settings(max_examples=200, deadline=None)
@given(COUNT, COUNT, PRICES, st.data())
def test_the_hold_covers_any_usage_within_its_limits(estimate, max_output, price, data):
    """When cached input is not dearer than input, no usage within the estimate and max output costs
    more than the hold."""
    price = Price(price.input_per_mtok_micro, price.output_per_mtok_micro,
                  min(price.cached_input_per_mtok_micro, price.input_per_mtok_micro))
    cached = data.draw(st.integers(0, estimate))
    used = Usage(data.draw(st.integers(0, estimate - cached)), cached, data.draw(st.integers(0, max_output)))
    assert cost_micro(used, price) <= max_cost_micro(price, estimate, max_output)
