"""Traffic for the dashboard: requests/s, error rate and p95 latency, read from the gateway's own
Prometheus series (every worker's, summed) sampled on a timer into a bounded ring.

The admin UI's own pages, /health and /metrics are left out: the numbers describe the traffic the
gateway serves. An error is an answer with a 5xx status (the gateway's or the upstream's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from gateway.core import metrics
from gateway.core.app_keys import SETTINGS

IGNORED_ROUTES = frozenset(("admin_ui", "health", "metrics"))
SAMPLES_MAX = 720  # an hour at the default 5 s
WINDOW_S = 60.0  # the rate, error rate and p95 are over about this last minute


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    requests: float
    errors: float
    # Cumulative latency histogram: upper bound (s) -> requests at or under it.
    buckets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Figures:
    requests_per_s: float
    error_rate: float | None  # None: no requests in the window
    p95_ms: float | None
    window_s: float
    rates: list[tuple[float, float]] = field(default_factory=list)  # (seconds ago, requests/s)


def read(now_s: float) -> Sample:
    """The counters as they stand now."""
    requests = errors = 0.0
    buckets: dict[float, float] = collections.defaultdict(float)
    for family in metrics.registry().collect():
        if family.name == "tollgate_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("route") not in IGNORED_ROUTES:
                    requests += sample.value
                    errors += sample.value if sample.labels.get("status", "").startswith("5") else 0.0
        elif family.name == "tollgate_http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("route") not in IGNORED_ROUTES:
                    buckets[float(sample.labels["le"])] += sample.value
    return Sample(now_s, requests, errors, tuple(sorted(buckets.items())))


def percentile_s(old: Sample, new: Sample, share: float) -> float | None:
    """The latency under which `share` of the requests between two samples finished (linear
    within the histogram bucket that holds it); None without requests."""
    before = dict(old.buckets)
    counts = [(bound, count - before.get(bound, 0.0)) for bound, count in new.buckets]
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    wanted, lower_bound, lower_count = share * total, 0.0, 0.0
    for bound, count in counts:
        if count >= wanted:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((wanted - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


class Traffic:
    """A ring of samples; `figures` compares the counters now with the sample about a minute ago."""

    def __init__(self) -> None:
        self.samples: collections.deque[Sample] = collections.deque(maxlen=SAMPLES_MAX)

    def sample(self, now_s: float | None = None) -> None:
        self.samples.append(read(time.monotonic() if now_s is None else now_s))

    def figures(self, now_s: float | None = None) -> Figures:
        current = read(time.monotonic() if now_s is None else now_s)
        if not self.samples:
            return Figures(0.0, None, None, 0.0)
        base = next((s for s in reversed(self.samples) if current.at_s - s.at_s >= WINDOW_S), self.samples[0])
        elapsed_s = max(current.at_s - base.at_s, 1e-9)
        requests = current.requests - base.requests
        p95 = percentile_s(base, current, 0.95)
        history = list(self.samples) + [current]
        rates = [(current.at_s - b.at_s, (b.requests - a.requests) / max(b.at_s - a.at_s, 1e-9))
                 for a, b in zip(history, history[1:])]
        return Figures(requests / elapsed_s, (current.errors - base.errors) / requests if requests else None,
                       None if p95 is None else p95 * 1000, elapsed_s, rates)

    async def run(self, interval_s: float) -> None:
        while True:
            self.sample()
            await asyncio.sleep(interval_s)


TRAFFIC = web.AppKey("admin_traffic", Traffic)


async def traffic_ctx(app: web.Application) -> AsyncIterator[None]:
    traffic = app[TRAFFIC] = Traffic()
    task = asyncio.create_task(traffic.run(app[SETTINGS].admin_traffic_sample_s), name="admin-traffic")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
