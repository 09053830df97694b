"""Metrics: the Prometheus series, aggregated across worker processes when served with --workers N.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported; `gateway.server`
sets it (from settings) before importing this module in multi-worker runs.
"""

from __future__ import annotations

from typing import TypeVar

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

# Label sets whose series the hot path remembers (see `labelled`); beyond this they are looked up again.
LABEL_SETS_CACHED_MAX = 1024
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("tollgate_http_requests", "Requests served, by route, status and outcome.",
                   ["route", "method", "status", "outcome"])
REQUEST_SECONDS = Histogram("tollgate_http_request_duration_seconds",
                            "Time from request to the end of the response.", ["route"],
                            buckets=LATENCY_BUCKETS_S)
UPSTREAM_REQUESTS = Counter("tollgate_upstream_requests", "Requests forwarded upstream, by outcome.",
                            ["upstream", "outcome"])
UPSTREAM_SECONDS = Histogram("tollgate_upstream_response_seconds",
                             "Time until the upstream's response headers arrived.", ["upstream"],
                             buckets=LATENCY_BUCKETS_S)
AUTH_CACHE = Counter("tollgate_auth_cache_lookups",
                     "Credential lookups: redis_hit, postgres_fallback (cache miss), redis_unavailable.",
                     ["result"])
RATE_LIMITED = Counter("tollgate_rate_limited", "Requests refused by a rate limit.")
PROXY_BYTES = Counter("tollgate_proxy_bytes", "Body bytes relayed, by direction (in = from client).",
                      ["direction"])
SESSIONS_FLUSHED = Counter("tollgate_session_updates_flushed",
                           "Per-session counter batches written to PostgreSQL.")
SESSION_UPDATES_DROPPED = Counter("tollgate_session_updates_dropped",
                                  "Session counter updates dropped (store unreachable too long, or refused).")
SESSIONS_ENDED = Counter("tollgate_sessions_ended", "Proxy sessions ended after idling.")
SESSIONS_STARTED = Counter("tollgate_sessions_started", "Device bindings taken (new proxy sessions).")
DATABASE_QUERIES = Counter("tollgate_database_queries", "Queries sent to PostgreSQL by this gateway.")
AI_TOKENS = Counter("tollgate_ai_tokens",
                    "AI tokens metered, by provider, model and kind (input, cached_input, output).",
                    ["provider", "model", "kind"])
AI_CREDITS = Counter("tollgate_ai_credits_charged_micro", "Micro-credits charged for AI calls, by provider and model.",
                     ["provider", "model"])
AI_CALLS = Counter("tollgate_ai_calls", "AI calls, by provider, outcome and where their usage came from.",
                   ["provider", "outcome", "usage_source"])
AI_UNDERCHARGED = Counter("tollgate_ai_undercharged_micro",
                          "Cost above the hold that could not be charged (the hold was too small).")
CONNECTIONS_CLOSED = Counter("tollgate_connections_closed",
                             "Client connections closed by the gateway: beyond a cap (total_limit, ip_limit) "
                             "or without a whole request head in time (head_timeout).", ["reason"])
PAYMENTS = Counter("tollgate_payments", "Payment status changes, by provider and the status reached.",
                   ["provider", "status"])
PAYMENT_CREDITS = Counter("tollgate_payment_credits_micro", "Micro-credits credited by provider payments.",
                          ["provider"])
PAYMENT_CALLBACKS = Counter("tollgate_payment_callbacks",
                            "Provider callbacks by result: ok, replayed, rejected (bad signature, stale, "
                            "unknown payment, wrong amount), failed (the provider could not confirm).",
                            ["provider", "result"])
BUDGET_ALERTS = Counter("tollgate_budget_alerts", "Budgets whose spend reached their alert share (once per "
                        "window), by scope (key or user).", ["scope"])
WORKERS = Gauge("tollgate_workers", "Worker processes serving this port.", multiprocess_mode="livesum")
# The operator's gauges (deploy/prometheus/alerts.yml), set by background checks every
# TOLLGATE_WATCH_INTERVAL_S / TOLLGATE_RECONCILE_INTERVAL_S. Any worker that cannot reach a backend
# makes it 0 (livemin); the ledger's are the same database read by every worker (the latest wins).
BACKEND_UP = Gauge("tollgate_backend_up", "1 while this gateway reaches the backend (postgres, redis), else 0.",
                   ["backend"], multiprocess_mode="livemin")
OPEN_HOLDS = Gauge("tollgate_ledger_open_holds", "Holds placed and not yet posted or voided.",
                   multiprocess_mode="livemostrecent")
OPEN_HOLDS_MICRO = Gauge("tollgate_ledger_held_micro", "Micro-credits reserved by open holds.",
                         multiprocess_mode="livemostrecent")
EXPIRED_HOLDS = Gauge("tollgate_ledger_expired_open_holds",
                      "Open holds past their expiry that the sweep has not voided yet (a backlog).",
                      multiprocess_mode="livemostrecent")
RECONCILE_PROBLEMS = Gauge("tollgate_ledger_reconcile_problems",
                           "Problems the last reconciliation found (0 = every balance matches its transfers).",
                           multiprocess_mode="livemostrecent")
RECONCILE_CHECKED = Gauge("tollgate_ledger_reconcile_checked_timestamp_seconds",
                          "When the last reconciliation finished (Unix time).", multiprocess_mode="livemostrecent")


Metric = TypeVar("Metric", bound=MetricWrapperBase)


@functools.lru_cache(maxsize=LABEL_SETS_CACHED_MAX)
def labelled(metric: Metric, *label_values: str) -> Metric:
    """`metric.labels(*label_values)`, remembered: labels() takes a lock and re-checks its arguments
    on every call, and the hot path asks for the same few series several times per request."""
    return metric.labels(*label_values)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> CollectorRegistry:
    """The series to read: every worker's summed when running multi-process, else this process's."""
    if multiprocess_dir():
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        return summed
    return REGISTRY


def render() -> tuple[bytes, str]:
    """The exposition text: every worker's series summed when running multi-process."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
