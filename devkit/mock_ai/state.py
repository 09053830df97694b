"""What the mock remembers between requests: accepted keys, the pending fault, latency, the request log, the cache."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from aiohttp import web

REQUEST_LOG_MAX = 100
ANTHROPIC_CACHE_ENTRIES_MAX = 1000
CHUNK_DELAY_MS_DEFAULT = 2
KEY_PREFIXES_DEFAULT = ("sk-mock", "mock-")


@dataclass(slots=True)
class Fault:
    mode: str
    remaining: int
    provider: str | None
    delay_ms: int | None
    retry_after_s: int


@dataclass(slots=True)
class AiState:
    """Everything the mock remembers, on the app so that each server has its own."""

    accepted_keys: frozenset[str] | None = None  # None: any key with one of KEY_PREFIXES_DEFAULT
    fault: Fault | None = None
    latency_ms: int = 0
    chunk_delay_ms: int = CHUNK_DELAY_MS_DEFAULT
    requests: deque = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_MAX))
    anthropic_cache: OrderedDict = field(default_factory=OrderedDict)  # prefix digest -> None, LRU order
    serial: int = 0

    def next_id(self) -> str:
        self.serial += 1
        return f"mock{self.serial:08d}"

    def accepts(self, key: str) -> bool:
        if self.accepted_keys is not None:
            return key in self.accepted_keys
        return key.startswith(KEY_PREFIXES_DEFAULT)

    def take_fault(self, provider: str) -> Fault | None:
        """The fault for this request, if any; each matching request uses up one."""
        fault = self.fault
        if fault is None or (fault.provider is not None and fault.provider != provider):
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault

    def remember_prefix(self, digest: str) -> bool:
        """True when the prefix was cached already; either way it is cached now."""
        seen = digest in self.anthropic_cache
        self.anthropic_cache[digest] = None
        self.anthropic_cache.move_to_end(digest)
        while len(self.anthropic_cache) > ANTHROPIC_CACHE_ENTRIES_MAX:
            self.anthropic_cache.popitem(last=False)
        return seen

    def reset(self) -> None:
        self.accepted_keys, self.fault, self.latency_ms = None, None, 0
        self.chunk_delay_ms = CHUNK_DELAY_MS_DEFAULT
        self.requests.clear()
        self.anthropic_cache.clear()


AI_STATE_KEY = web.AppKey("mock_ai_state", AiState)
