"""The three AI providers: which models they serve, where their upstream is, and their credentials."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from gateway.core.config import Settings

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
    timeout: aiohttp.ClientTimeout | None = None
    _cycle: itertools.cycle = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(self.keys or ("",))

    def next_key(self) -> str:
        return next(self._cycle)

    def __repr__(self) -> str:  # never the keys
        return f"Upstream({self.provider!r}, {self.base_url!r}, {len(self.keys)} key(s))"


def upstreams(settings: Settings) -> dict[str, Upstream]:
    def upstream(provider: str) -> Upstream:
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.ai_connect_timeout_s,
                                        sock_read=settings.read_timeout_s(provider))
        # Stored in its encoded form, so a request only appends a checked path (forwarding.upstream_request).
        base_url = str(URL(getattr(settings, f"{provider}_base_url").rstrip("/")))
        return Upstream(provider, base_url, settings.api_keys(provider), timeout)

    return {provider: upstream(provider) for provider in PROVIDERS}
