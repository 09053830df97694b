"""The one small interface every payment provider stands behind — create a payment, verify a
callback, parse what it says, re-check a payment — and the shared pieces: the order a provider is
asked to collect, the event a callback or a re-check yields, the refusals, the provider HTTP call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
import orjson

from gateway.core.errors import BadRequest, Conflict, UpstreamUnreachable
from gateway.core.failures import upstream_error

# A provider's answer is read whole; none of theirs comes near this.
ANSWER_MAX_BYTES = 1024 * 1024
# What a verified callback or a re-check can say about a payment.
PAID, PENDING, FAILED, EXPIRED, REFUNDED, IGNORED = "paid", "pending", "failed", "expired", "refunded", "ignored"


class ProviderDisabled(Conflict):
    code, message = "provider_disabled", "this payment provider is not configured on this gateway"


class CallbackRejected(BadRequest):
    """A callback that cannot be trusted or does not fit its payment: 400, nothing credited."""
    code, message = "invalid_callback", "the callback could not be verified"


class ProviderFailed(UpstreamUnreachable):
    code, message = "provider_error", "the payment provider refused or failed the request"


@dataclass(frozen=True, slots=True)
class Order:
    """What a provider is asked to collect: the amount is the server's, computed from its prices."""
    payment_id: int
    amount: Decimal
    currency: str
    credits_micro: int
    description: str
    email: str | None
    return_url: str  # the payment's page on this gateway; /success and /fail are appended


@dataclass(frozen=True, slots=True)
class Checkout:
    reference: str    # the provider's id of the payment: unique per provider
    payment_url: str  # where the payer goes


@dataclass(frozen=True, slots=True)
class Callback:
    """A callback as it arrived: the raw body (signatures cover it) and its fields (form, query or JSON)."""
    body: bytes
    headers: Mapping[str, str]
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """What a verified callback or a re-check says about one payment."""
    status: str                       # PAID, PENDING, FAILED, EXPIRED, REFUNDED or IGNORED
    name: str                         # the provider's own word (event type, invoice status)
    reference: str | None = None      # the provider's id (cs_…, INV-…)
    payment_id: int | None = None     # ours, when the provider names it (Robokassa's InvId)
    provider_payment: str | None = None  # Stripe's PaymentIntent: what a refund names
    amount: Decimal | None = None     # the money the provider says, to compare with the payment's
    currency: str | None = None
    refunded: tuple[int, int] | None = None  # (refunded so far, charged) in minor units
    detail: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    recheckable: bool  # whether recheck() can ask the provider (Robokassa has no API for it)

    async def create(self, order: Order) -> Checkout: ...

    def verify(self, callback: Callback, now_s: float) -> None:
        """Raise CallbackRejected unless the callback is the provider's own, fresh and intact."""

    async def parse(self, callback: Callback) -> Event:
        """What a verified callback says (CryptoCloud asks its info endpoint for it)."""

    async def recheck(self, reference: str) -> Event: ...


async def call_json(session: aiohttp.ClientSession, provider: str, method: str, url: str, *,
                    headers: Mapping[str, str], timeout_s: float, **body: Any) -> Any:
    """One provider API call, its JSON answer; failures are the gateway's 502/504 errors."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.request(method, url, headers=headers, timeout=timeout, **body) as response:
            raw = await response.content.read(ANSWER_MAX_BYTES + 1)
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise upstream_error(error, provider) from error
    if len(raw) > ANSWER_MAX_BYTES:
        raise ProviderFailed(f"{provider} answered more than {ANSWER_MAX_BYTES} bytes")
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ProviderFailed(f"{provider} answered {status} without JSON") from error
    if not 200 <= status < 300:
        raise ProviderFailed(f"{provider} answered {status}")
    return answer


def text_field(source: Mapping[str, Any], name: str, what: str, length_max: int = 200) -> str:
    """A required string field of a provider's message; a malformed message is refused, never a 500."""
    value = source.get(name) if isinstance(source, Mapping) else None
    if not isinstance(value, str) or not 0 < len(value) <= length_max or "\x00" in value:
        raise CallbackRejected(f"{what}: {name} is missing or malformed", code="malformed_callback")
    return value


def int_field(source: Mapping[str, Any], name: str, what: str) -> int:
    value = source.get(name) if isinstance(source, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise CallbackRejected(f"{what}: {name} is missing or malformed", code="malformed_callback")
    return value


