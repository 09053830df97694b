"""The three AI providers: which models they serve, where their upstream is, and their credentials."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from gateway.core.config import Settings

PROVIDERS = ("openai", "anthropic", "gemini")
# Upstream URLs a provider remembers (one per path and model); beyond, the memory starts again.
URLS_CACHED_MAX = 4096


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
    _urls: dict[str, URL] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(self.keys or ("",))

    def url(self, path: str) -> URL:
        """The upstream URL of a checked path (and query), built once per path: yarl parses and
        checks a URL on every construction. encoded=True: the base is stored encoded and the path
        is one the route allowed; parsed, yarl would resolve dot segments and decode escapes (C1)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= URLS_CACHED_MAX:
                self._urls.clear()
            url = self._urls[path] = URL(self.base_url + path, encoded=True)
        return url

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
