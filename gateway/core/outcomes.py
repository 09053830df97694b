"""Outcome: the one word each request ends with — the same in metrics, logs and usage rows."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    # The upstream answered with an error status (relayed as it was; nothing charged on AI routes).
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    # The upstream broke off an answer already under way.
    UPSTREAM_BROKEN = "upstream_broken"
    CLIENT_DISCONNECTED = "client_disconnected"
    # The gateway was stopping (SIGTERM) and cut the answer at TOLLGATE_SHUTDOWN_GRACE_S.
    SHUTDOWN = "shutdown"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    # A budget (a credit cap of the key or the user over a period) could not cover the call's hold.
    BUDGET_EXCEEDED = "budget_exceeded"
    NO_ROUTE = "no_route"
    CONFLICT = "conflict"
    BAD_REQUEST = "bad_request"
    # A backing store (PostgreSQL, Redis) could not serve the request.
    UNAVAILABLE = "unavailable"
    MALFORMED_REQUEST = "malformed_request"
    ERROR = "error"
