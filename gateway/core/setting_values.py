"""A setting's raw value (an environment string or a TOML value) read as its field's type."""

from __future__ import annotations

from typing import Any

from gateway.core import payment_settings
from gateway.core.plan_settings import parse_plan_limits, parse_token_prices

TRUE_WORDS = {"1", "true", "yes", "on"}
BOOLEAN_WORDS = TRUE_WORDS | {"0", "false", "no", "off"}


def coerce(annotation: str, raw: Any) -> Any:
    """The value for a field annotated `annotation` (Secret is config's own); TypeError or
    ValueError when it cannot be read."""
    if annotation == "int":
        return int(raw)
    if annotation == "float":
        return float(raw)
    if annotation == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in BOOLEAN_WORDS:
            raise ValueError(raw)
        return text in TRUE_WORDS
    if annotation == "Mapping[int, int]":
        return parse_token_prices(raw)
    if annotation == "Mapping[str, Decimal]":
        return payment_settings.parse_credit_prices(raw)
    if annotation.startswith("Mapping"):
        return parse_plan_limits(raw)
    return str(raw)


def default_ai_price_micro(raw: str) -> tuple[int, int, int] | None:
    """'input,output,cached' credits per million tokens in micro-credits; None when empty."""
    from ledger.money import MoneyError, parse_credits

    if not raw.strip():
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 3:
        raise ValueError("must be 'input,output,cached' credits per million tokens")
    try:
        micro = [parse_credits(part) for part in parts]
    except MoneyError as error:
        raise ValueError(str(error)) from error
    return micro[0], micro[1], micro[2]
