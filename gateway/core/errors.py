"""Errors: a shallow tree of gateway errors, each with an HTTP status, a code and an Outcome."""

from __future__ import annotations

import logging

from gateway.core.outcomes import Outcome

log = logging.getLogger(__name__)


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    outcome = Outcome.ERROR
    message = "internal error"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status, code, outcome, message = 400, "bad_request", Outcome.BAD_REQUEST, "bad request"


class Unauthenticated(GatewayError):
    status, code, outcome, message = 401, "invalid_token", Outcome.UNAUTHENTICATED, "invalid or unknown credential"


class Forbidden(GatewayError):
    status, code, outcome, message = 403, "forbidden", Outcome.FORBIDDEN, "not allowed"


class NotFound(GatewayError):
    status, code, outcome, message = 404, "not_found", Outcome.NO_ROUTE, "not found"


class Conflict(GatewayError):
    status, code, outcome, message = 409, "conflict", Outcome.CONFLICT, "conflict"


class PayloadTooLarge(GatewayError):
    status, code, outcome, message = 413, "payload_too_large", Outcome.BAD_REQUEST, "request body too large"


class RequestTimeout(GatewayError):
    status, code, outcome, message = (408, "request_timeout", Outcome.BAD_REQUEST,
                                      "the request body stopped arriving")


class ExpectationFailed(GatewayError):
    status, code, outcome, message = (417, "expectation_failed", Outcome.BAD_REQUEST,
                                      "only Expect: 100-continue is supported")


class UnsupportedMediaType(GatewayError):
    status, code, outcome, message = 415, "unsupported_media_type", Outcome.BAD_REQUEST, "unsupported media type"


class Unprocessable(GatewayError):
    status, code, outcome, message = 422, "unprocessable", Outcome.BAD_REQUEST, "request cannot be carried out"


class RateLimited(GatewayError):
    status, code, outcome, message = 429, "rate_limited", Outcome.RATE_LIMITED, "rate limit exceeded"


class UpstreamUnreachable(GatewayError):
    status, code, outcome, message = 502, "upstream_unreachable", Outcome.UPSTREAM_UNREACHABLE, "upstream unreachable"


class UpstreamBroken(GatewayError):
    status, code, outcome, message = 502, "upstream_broken", Outcome.UPSTREAM_BROKEN, "upstream broke off its answer"


class ServiceUnavailable(GatewayError):
    status, code, outcome, message = 503, "service_unavailable", Outcome.UNAVAILABLE, "service unavailable"


class UpstreamTimeout(GatewayError):
    status, code, outcome, message = 504, "upstream_timeout", Outcome.UPSTREAM_TIMEOUT, "upstream timed out"


# The status recorded for a client that left before a response started (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(GatewayError):
    """The client left before an answer started; the response rendered for it is never read."""

    status, code, outcome, message = (CLIENT_CLOSED_REQUEST, "client_disconnected", Outcome.CLIENT_DISCONNECTED,
                                      "client closed the request")


class PaymentRequired(GatewayError):
    status, code, outcome, message = 402, "insufficient_balance", Outcome.INSUFFICIENT_CREDIT, "insufficient balance"


class BudgetExceeded(GatewayError):
    status, code, outcome, message = 402, "budget_exceeded", Outcome.BUDGET_EXCEEDED, "budget exceeded"


def from_ledger(error: Exception) -> GatewayError:
    """The ledger's refusals as HTTP errors: 402 no funds, 409 key reuse, 422 past a bound, 400 bad
    amount/hold."""
    from ledger import transfers

    code = getattr(error, "code", "ledger_error")
    if isinstance(error, transfers.InsufficientBalance):
        return PaymentRequired(str(error))
    if isinstance(error, transfers.LimitExceeded):
        return BudgetExceeded(str(error))
    if isinstance(error, (transfers.IdempotencyConflict, transfers.HoldResolved)):
        return Conflict(str(error), code=code)
    if isinstance(error, transfers.HoldNotFound):
        return NotFound(str(error), code=code)
    if isinstance(error, transfers.AmountOutOfRange):
        return Unprocessable(str(error), code=code)
    if isinstance(error, transfers.ItemFailed):  # its database error is logged, not shown
        log.warning("ledger item failed: %s", error)
        return ServiceUnavailable("the ledger could not write this transfer, retry shortly")
    return BadRequest(str(error), code=code)
