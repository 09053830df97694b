"""Table tests for gateway.ai.estimates: the usage charged when the provider's report is missing."""

import pytest

from gateway.ai.estimates import conservative, known_so_far
from gateway.ai.usage import Usage

BOUNDS = {"input_bound": 1000, "output_bound": 50}


@pytest.mark.parametrize("reported, text_chars, reasoning, expected", [
    (None, 0, False, Usage(1000, 0, 0)),                   # nothing reported: the prompt's bound
    (None, 9, False, Usage(1000, 0, 3)),                   # 9 characters: 3 tokens (rounded up)
    (None, 9, True, Usage(1000, 0, 50)),                   # hidden reasoning: the whole output bound
    (Usage(120, 30, 1), 9, False, Usage(120, 30, 3)),      # Anthropic's message_start: its input
    (Usage(120, 0, 40), 9, False, Usage(120, 0, 40)),      # reported output larger than the text
    (Usage(120, 0, 70), 9, True, Usage(120, 0, 70)),       # an upstream past its bound is not lowered
    (Usage(0, 0, 5), 9, False, Usage(1000, 0, 5)),         # a report without input: the bound
])
def test_conservative_usage(reported, text_chars, reasoning, expected):
    assert conservative(reported, text_chars, reasoning=reasoning, **BOUNDS) == expected


@pytest.mark.parametrize("reported, text_chars, expected", [
    (None, 9, Usage(0, 0, 2)),              # what is certain: whole tokens of text seen
    (Usage(120, 30, 1), 9, Usage(120, 30, 2)),
    (Usage(120, 30, 40), 9, Usage(120, 30, 40)),
])
def test_known_so_far_never_exceeds_what_was_seen(reported, text_chars, expected):
    assert known_so_far(reported, text_chars) == expected
