"""Money: integer micro-credits inside, decimal strings of credits at the edges, never floats."""

from __future__ import annotations

import re

MICRO_PER_CREDIT = 1_000_000
# Far above any real balance, far below bigint: keeps sums of many amounts inside PostgreSQL's range.
AMOUNT_MAX_MICRO = 10**15
# Bounds the ledger functions enforce (migration 0006, decision 0014): no running sum of an account
# passes ACCOUNT_SUM_MAX_MICRO (sums and their differences stay inside bigint), and no user balance
# passes USER_BALANCE_MAX_MICRO (10^10 credits), so one user cannot fill a shared system account.
ACCOUNT_SUM_MAX_MICRO = 4 * 10**18
USER_BALANCE_MAX_MICRO = 10**16
# ASCII digits only: `\d` and int() would also take Arabic-Indic, full-width and other digits.
_CREDITS = re.compile(r"(-?)([0-9]{1,10})(?:\.([0-9]{1,6}))?")


class MoneyError(ValueError):
    """A credits string that is not a decimal number with at most 6 decimals, or out of range."""


def parse_credits(text: object, *, allow_negative: bool = False) -> int:
    """'12.5' -> 12_500_000 micro-credits; exact, no floats involved."""
    if not isinstance(text, str):
        raise MoneyError("credits must be a decimal string such as \"12.50\"")
    match = _CREDITS.fullmatch(text.strip())
    if match is None:
        raise MoneyError("credits must be a decimal string with at most 6 decimals")
    sign, whole, fraction = match.groups()
    micro = int(whole) * MICRO_PER_CREDIT + int((fraction or "").ljust(6, "0"))
    if sign:
        if not allow_negative:
            raise MoneyError("credits must not be negative")
        micro = -micro
    if abs(micro) > AMOUNT_MAX_MICRO:
        raise MoneyError("credits amount out of range")
    return micro


def format_micro(micro: int) -> str:
    """12_500_000 -> '12.5'; 1 -> '0.000001'; exact."""
    assert isinstance(micro, int) and not isinstance(micro, bool)
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), MICRO_PER_CREDIT)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")
