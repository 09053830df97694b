"""The three AI providers: which models they serve, where their upstream is, and their credentials."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from gateway.config import Settings

PROVIDERS = ("openai", "anthropic", "gemini")


def provider_for_model(model: str) -> str | None:
    """gemini-* → gemini, claude-* → anthropic, gpt-* / o<digit>* / text-embedding-* → openai."""
    name = model.lower().removeprefix("models/")
    if name.startswith("gemini-"):
        return "gemini"
    if name.startswith("claude-"):
        return "anthropic"
    if name.startswith(("gpt-", "text-embedding-", "chatgpt-")) or (name[:1] == "o" and name[1:2].isdigit()):
        return "openai"
    return None


@dataclass
class Upstream:
    """A provider's base URL and its keys, used round-robin (one cycle per worker)."""

    provider: str
    base_url: str
    keys: tuple[str, ...]
    _cycle: itertools.cycle = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(self.keys or ("",))

    def next_key(self) -> str:
        return next(self._cycle)

    def __repr__(self) -> str:  # never the keys
        return f"Upstream({self.provider!r}, {self.base_url!r}, {len(self.keys)} key(s))"


def upstreams(settings: Settings) -> dict[str, Upstream]:
    return {
        "openai": Upstream("openai", settings.openai_base_url.rstrip("/"), _keys(settings.openai_api_keys.value)),
        "anthropic": Upstream("anthropic", settings.anthropic_base_url.rstrip("/"),
                              _keys(settings.anthropic_api_keys.value)),
        "gemini": Upstream("gemini", settings.gemini_base_url.rstrip("/"), _keys(settings.gemini_api_keys.value)),
    }


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())
