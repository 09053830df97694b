"""Rate limits: plan limits, the per-process fallback limiter and the RateLimit-* response headers."""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from gateway.core.call import Principal
from gateway.core.errors import RateLimited


def plan_limit(plan_limits_per_min: dict[str, int] | object, plan: str) -> int:
    return int(plan_limits_per_min.get(plan, 0))  # type: ignore[union-attr]


def _seconds(ms: int) -> str:
    return str(max(1, math.ceil(ms / 1000)))


def limit_headers(principal: Principal) -> dict[str, str]:
    if principal.rate_limit <= 0:
        return {}
    return {
        "RateLimit-Limit": str(principal.rate_limit),
        "RateLimit-Remaining": str(max(0, principal.rate_remaining)),
        "RateLimit-Reset": _seconds(principal.rate_reset_ms),
    }


def rate_limited(window: str, limit: int, retry_ms: int) -> RateLimited:
    retry = _seconds(retry_ms)
    return RateLimited(
        f"rate limit of {limit} requests per window exceeded ({window})",
        headers={"Retry-After": retry, "RateLimit-Limit": str(limit),
                 "RateLimit-Remaining": "0", "RateLimit-Reset": retry},
    )


class LocalWindows:
    """Sliding-window logs in process memory: the fallback while Redis is unreachable.

    Bounded: at most keys_max keys (least recently used evicted) and `limit` entries per key.
    """

    def __init__(self, window_ms: int, keys_max: int = 50_000) -> None:
        self.window_ms = window_ms
        self.keys_max = keys_max
        self._logs: OrderedDict[str, deque[int]] = OrderedDict()

    def _log(self, key: str, now_ms: int) -> deque[int]:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = deque()
            if len(self._logs) > self.keys_max:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(key)
        while log and log[0] <= now_ms - self.window_ms:
            log.popleft()
        return log

    def admit(self, windows: list[tuple[str, str, int]], now_ms: int) -> tuple[int, int, int]:
        """Admit a request in every (name, key, limit) window or raise RateLimited.

        Returns (limit, remaining, reset_ms) of the tightest window, limit 0 when unlimited.
        """
        logs = []
        best = (0, -1, 0)
        for name, key, limit in windows:
            if limit <= 0:
                continue
            log = self._log(key, now_ms)
            reset_ms = (log[0] + self.window_ms - now_ms) if log else self.window_ms
            if len(log) >= limit:
                raise rate_limited(name, limit, reset_ms)
            remaining = limit - len(log) - 1
            if best[1] < 0 or remaining < best[1]:
                best = (limit, remaining, reset_ms)
            logs.append(log)
        for log in logs:
            log.append(now_ms)
        return best
