"""Token counts as a pure function of the request: what a prompt costs, how long a reply is, what is cached."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_TOKENS_DEFAULT = 20
CACHE_MIN_TOKENS = 1024  # OpenAI's and Anthropic's smallest cacheable prompt

REPLY_WORDS = ("The", "mock", "upstream", "answers", "with", "exactly", "one", "word", "per", "token.")


@dataclass(frozen=True, slots=True)
class Usage:
    """One call's token counts, before each provider names and splits them its own way."""

    input_tokens: int  # every prompt token, cached ones included
    output_tokens: int  # every generated token, reasoning included
    cached_tokens: int = 0  # part of input_tokens read from a cache
    cache_write_tokens: int = 0  # part of input_tokens written to a cache (Anthropic)
    reasoning_tokens: int = 0  # part of output_tokens spent thinking
    truncated: bool = False  # the caller's token limit cut the reply short

    @property
    def visible_tokens(self) -> int:
        return self.output_tokens - self.reasoning_tokens


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def measure_input(messages: Iterable[list[str]]) -> int:
    """Prompt tokens: the texts of each message plus a fixed overhead per message, at least 1."""
    total = sum(MESSAGE_OVERHEAD_TOKENS + sum(text_tokens(text) for text in texts) for texts in messages)
    return max(1, total)


def cached_by_length(messages: Iterable[list[str]]) -> int:
    """OpenAI/Gemini rule: every text of at least CACHE_MIN_TOKENS tokens counts as already cached."""
    return sum(tokens for texts in messages for text in texts if (tokens := text_tokens(text)) >= CACHE_MIN_TOKENS)


def plan_output(limit: int | None, *, reasoning: bool, reasoning_max: int | None = None) -> tuple[int, int, bool]:
    """(output tokens, reasoning tokens among them, truncated) for a reply capped at `limit`."""
    output_tokens = REPLY_TOKENS_DEFAULT if limit is None else min(limit, REPLY_TOKENS_DEFAULT)
    reasoning_tokens = output_tokens // 2 if reasoning else 0
    if reasoning_max is not None and reasoning_max >= 0:
        reasoning_tokens = min(reasoning_tokens, reasoning_max)
    return output_tokens, reasoning_tokens, limit is not None and limit < REPLY_TOKENS_DEFAULT


def reply_pieces(count: int) -> list[str]:
    """The reply as `count` word tokens; joined they give the reply text."""
    return [(" " if number else "") + REPLY_WORDS[number % len(REPLY_WORDS)] for number in range(count)]


def content_texts(content: Any) -> list[str]:
    """Every text in a message's content: a string, or parts/blocks with `text` (nested `content` too)."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif "content" in part:
                    texts.extend(content_texts(part["content"]))
    return texts


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the text, so equal inputs embed equally."""
    generator = random.Random(hashlib.sha256(text.encode()).digest())
    values = [generator.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]
