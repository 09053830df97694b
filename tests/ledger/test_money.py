"""Money at the edges: decimal strings of credits to integer micro-credits and back, exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ledger import AMOUNT_MAX_MICRO, MoneyError, format_micro, parse_credits

VALID = [
    ("0", 0),
    ("1", 1_000_000),
    ("12.5", 12_500_000),
    ("12.50", 12_500_000),
    ("0.000001", 1),
    ("0.1", 100_000),
    ("007", 7_000_000),
    ("  3.25  ", 3_250_000),
    ("999999999.999999", 999_999_999_999_999),
    ("1000000000", AMOUNT_MAX_MICRO),
]

INVALID = [
    "",
    " ",
    "abc",
    "1e3",
    "1E3",
    "0.0000001",            # a seventh decimal would be rounded away
    "1.",
    ".5",
    "+1",
    "--1",
    "-",
    "1,5",
    "1 000",
    "1_000",
    "0x10",
    "nan",
    "inf",
    "1.2.3",
    "1000000000.000001",    # one micro-credit above the range
    "99999999999",          # eleven digits
    "9" * 400,
    "١٢",                   # Arabic-Indic digits: decimal to Python's int(), not to us
    "１２",                 # full-width digits
    "12\n5",
]

NOT_STRINGS = [12, 12.5, 0.1, True, False, None, b"12", ["12"]]


@pytest.mark.parametrize("text, micro", VALID)
def test_parse_credits_reads_decimal_strings_exactly(text, micro):
    assert parse_credits(text) == micro


@pytest.mark.parametrize("text", INVALID)
def test_parse_credits_refuses_malformed_or_out_of_range_text(text):
    with pytest.raises(MoneyError):
        parse_credits(text)


@pytest.mark.parametrize("value", NOT_STRINGS, ids=repr)
def test_parse_credits_refuses_anything_but_a_string(value):
    with pytest.raises(MoneyError):
        parse_credits(value)


@pytest.mark.parametrize("text", ["-1", "-0.5", "-0.000001"])
def test_parse_credits_refuses_negative_amounts_unless_allowed(text):
    with pytest.raises(MoneyError, match="negative"):
        parse_credits(text)


@pytest.mark.parametrize("text, micro", [("-1", -1_000_000), ("-0.5", -500_000),
                                         ("-1000000000", -AMOUNT_MAX_MICRO), ("-0", 0)])
def test_parse_credits_reads_negative_amounts_when_allowed(text, micro):
    assert parse_credits(text, allow_negative=True) == micro


@pytest.mark.parametrize("text", ["-1000000000.000001", "--1", "-1e3"])
def test_parse_credits_refuses_bad_negative_text_even_when_allowed(text):
    with pytest.raises(MoneyError):
        parse_credits(text, allow_negative=True)


def test_money_error_is_a_value_error():
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize("micro, text", [
    (0, "0"),
    (1, "0.000001"),
    (10, "0.00001"),
    (100_000, "0.1"),
    (1_000_000, "1"),
    (12_500_000, "12.5"),
    (12_345_678, "12.345678"),
    (-1, "-0.000001"),
    (-12_500_000, "-12.5"),
    (AMOUNT_MAX_MICRO, "1000000000"),
])
def test_format_micro_writes_the_shortest_exact_decimal(micro, text):
    assert format_micro(micro) == text


@pytest.mark.parametrize("value", [1.5, True, "1", None], ids=repr)
def test_format_micro_refuses_non_integers(value):
    with pytest.raises(AssertionError):
        format_micro(value)


amounts = st.integers(min_value=-AMOUNT_MAX_MICRO, max_value=AMOUNT_MAX_MICRO)


@given(amounts)
def test_formatted_amounts_parse_back_to_the_same_micro_credits(micro):
    assert parse_credits(format_micro(micro), allow_negative=True) == micro


@given(st.integers(min_value=0, max_value=999_999_999), st.integers(min_value=0, max_value=999_999),
       st.integers(min_value=0, max_value=6))
def test_any_decimal_with_at_most_six_places_parses_and_formats_canonically(whole, fraction, places):
    fraction_text = f"{fraction:06d}"[:places]
    text = f"{whole}.{fraction_text}" if places else str(whole)
    micro = parse_credits(text)
    assert micro == whole * 1_000_000 + int(fraction_text.ljust(6, "0"))
    assert format_micro(micro) == format_micro(parse_credits(format_micro(micro)))


@given(st.text(max_size=20))
def test_parse_credits_either_returns_an_in_range_integer_or_raises_money_error(text):
    try:
        micro = parse_credits(text, allow_negative=True)
    except MoneyError:
        return
    assert type(micro) is int and abs(micro) <= AMOUNT_MAX_MICRO
    assert parse_credits(format_micro(micro), allow_negative=True) == micro
