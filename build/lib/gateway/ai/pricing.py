"""Cost of an AI call in micro-credits: integer arithmetic only, rounded up once per call."""

from dataclasses import dataclass

from gateway.ai.usage import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """A model's prices in micro-credits per million tokens (1 credit/Mtok = 1_000_000 here)."""

    input_per_mtok_micro: int
    output_per_mtok_micro: int
    cached_input_per_mtok_micro: int

    def __post_init__(self) -> None:
        for value in (self.input_per_mtok_micro, self.output_per_mtok_micro, self.cached_input_per_mtok_micro):
            if type(value) is not int or value < 0:
                raise ValueError(f"prices are non-negative ints of micro-credits per Mtok, got {value!r}")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micro(usage: Usage, price: Price) -> int:
    """ceil((input·p_in + cached·p_cached + output·p_out) / 1e6): exact, one rounding for the whole call.

    Rounding the sum once (not each part) is what makes a streamed call and the same call answered
    as JSON cost the same, and keeps the overcharge below one micro-credit.
    """
    scaled = (usage.input_tokens * price.input_per_mtok_micro
              + usage.cached_input_tokens * price.cached_input_per_mtok_micro
              + usage.output_tokens * price.output_per_mtok_micro)
    return _ceil_div(scaled, TOKENS_PER_PRICE_UNIT)


def max_cost_micro(price: Price, input_tokens_estimate: int, max_output_tokens: int) -> int:
    """The most a call can cost, for its hold: the whole prompt estimate at the full input price
    (as if nothing were cached) and every allowed output token."""
    return cost_micro(Usage(input_tokens_estimate, 0, max_output_tokens), price)
