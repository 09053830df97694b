"""Clock: the gateway's notion of now, replaceable so tests can move time forward."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time in seconds since the epoch."""

    def now_s(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(self.now_s() * 1000)


class ManualClock(Clock):
    """Wall-clock time plus an offset that tests advance explicitly."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds

    def now_s(self) -> float:
        return time.time() + self.offset_s
