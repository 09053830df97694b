"""Errors: a shallow tree of gateway errors, each with an HTTP status, a code and an outcome word."""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    outcome = "error"
    message = "internal error"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status, code, outcome, message = 400, "bad_request", "bad_request", "bad request"


class Unauthenticated(GatewayError):
    status, code, outcome, message = 401, "invalid_token", "unauthenticated", "invalid or unknown credential"


class Forbidden(GatewayError):
    status, code, outcome, message = 403, "forbidden", "forbidden", "not allowed"


class NotFound(GatewayError):
    status, code, outcome, message = 404, "not_found", "no_route", "not found"


class Conflict(GatewayError):
    status, code, outcome, message = 409, "conflict", "conflict", "conflict"


class PayloadTooLarge(GatewayError):
    status, code, outcome, message = 413, "payload_too_large", "bad_request", "request body too large"


class RequestTimeout(GatewayError):
    status, code, outcome, message = (408, "request_timeout", "bad_request",
                                      "the request body stopped arriving")


class ExpectationFailed(GatewayError):
    status, code, outcome, message = (417, "expectation_failed", "bad_request",
                                      "only Expect: 100-continue is supported")


class UnsupportedMediaType(GatewayError):
    status, code, outcome, message = 415, "unsupported_media_type", "bad_request", "unsupported media type"


class Unprocessable(GatewayError):
    status, code, outcome, message = 422, "unprocessable", "bad_request", "request cannot be carried out"


class RateLimited(GatewayError):
    status, code, outcome, message = 429, "rate_limited", "rate_limited", "rate limit exceeded"


class UpstreamUnreachable(GatewayError):
    status, code, outcome, message = 502, "upstream_unreachable", "upstream_unreachable", "upstream unreachable"


class ServiceUnavailable(GatewayError):
    status, code, outcome, message = 503, "service_unavailable", "unavailable", "service unavailable"


class UpstreamTimeout(GatewayError):
    status, code, outcome, message = 504, "upstream_timeout", "upstream_timeout", "upstream timed out"


class PaymentRequired(GatewayError):
    status, code, outcome, message = 402, "insufficient_balance", "payment_required", "insufficient balance"


def from_ledger(error: Exception) -> GatewayError:
    """The ledger's refusals as HTTP errors: 402 no funds, 409 key reuse, 422 past a bound, 400 bad
    amount/hold."""
    from ledger import transfers

    code = getattr(error, "code", "ledger_error")
    if isinstance(error, transfers.InsufficientBalance):
        return PaymentRequired(str(error))
    if isinstance(error, (transfers.IdempotencyConflict, transfers.HoldResolved)):
        return Conflict(str(error), code=code)
    if isinstance(error, transfers.HoldNotFound):
        return NotFound(str(error), code=code)
    if isinstance(error, transfers.AmountOutOfRange):
        return Unprocessable(str(error), code=code)
    return BadRequest(str(error), code=code)
