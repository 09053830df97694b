"""What a call is charged when the provider's own usage report is missing: a conservative estimate.

A stream the client left and that could not be read on to its usage report (drain timeout, upstream
broken), a stream that ended without a report, or a whole answer without `usage` (some
OpenAI-compatible servers): the provider bills the operator anyway, so the user pays an estimate
that does not fall short of the real bill for the prompt, and is capped by the hold at settlement.
The rule, in tokens (decision 0011):

- input: what the upstream already reported (Anthropic's `message_start`, Gemini's running
  `usageMetadata`), else the prompt's bound used for the hold (its bytes plus the media allowance);
- output: the larger of the reported output and the text produced (characters ÷ 4, rounded up);
- a request that may reason in tokens nobody sees: at least the whole output bound.
"""

from __future__ import annotations

from gateway.ai.usage import Usage

# Characters of generated text per token for an estimate; rounded up.
CHARS_PER_TOKEN = 4


def text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def conservative(reported: Usage | None, text_chars: int, *, input_bound: int, output_bound: int,
                 reasoning: bool) -> Usage:
    """The usage to charge when `reported` (what the upstream said so far, or None) is not final."""
    if reported is not None and reported.input_tokens + reported.cached_input_tokens > 0:
        input_tokens, cached = reported.input_tokens, reported.cached_input_tokens
    else:
        input_tokens, cached = input_bound, 0
    output = max(reported.output_tokens if reported is not None else 0, text_tokens(text_chars))
    if reasoning:
        output = max(output, output_bound)
    return Usage(input_tokens, cached, output)


def known_so_far(reported: Usage | None, text_chars: int) -> Usage:
    """The least the call has certainly used: what was reported, or the text seen if more."""
    if reported is None:
        return Usage(0, 0, text_chars // CHARS_PER_TOKEN)
    return Usage(reported.input_tokens, reported.cached_input_tokens,
                 max(reported.output_tokens, text_chars // CHARS_PER_TOKEN))
