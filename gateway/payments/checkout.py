"""Starting a payment: the server prices it, records it, and asks its provider for a checkout.

The payment row exists (pending) before the provider is called, so its id is the order number the
provider echoes; a provider that refuses leaves the payment failed, with the reason in its history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

from gateway.accounts import audit, users
from gateway.core.config import Settings
from gateway.core.errors import BadRequest, Conflict, GatewayError
from gateway.payments import prices, store
from gateway.payments.providers import CallbackRejected, Checkout, Order, Provider, ProviderFailed
from gateway.payments.robokassa import CURRENCY as ROBOKASSA_CURRENCY

RETURN_PATH = "/api/v1/payments/return"
# payments.amount is numeric(20, 2): an amount must stay below this (only absurd settings reach it).
AMOUNT_LIMIT = 10**17


def currency_for(settings: Settings, provider: str, requested: str | None) -> str:
    """The currency of a new payment: the one asked for, else the provider's or the first priced one."""
    if requested is None:
        requested = ROBOKASSA_CURRENCY if provider == "robokassa" else next(iter(settings.credit_prices))
    if requested not in settings.credit_prices:
        raise BadRequest(f"currency must be one of {', '.join(settings.credit_prices)}", code="invalid_currency")
    if provider == "robokassa" and requested != ROBOKASSA_CURRENCY:
        raise BadRequest("robokassa takes RUB only", code="invalid_currency")
    return requested


async def start(pool: asyncpg.Pool, settings: Settings, provider: Provider, *, credits_micro: int,
                currency: str, bundle_id: int | None, user_id: int | None, guest_email: str | None,
                description: str, now: dt.datetime, ip: str = "") -> store.Payment:
    amount = prices.amount_for(credits_micro, settings.credit_prices[currency], currency)
    if not prices.CENT <= amount < AMOUNT_LIMIT:
        raise BadRequest("the amount is out of range", code="invalid_amount")
    next_check_at = now + dt.timedelta(seconds=settings.payment_recheck_delay_s) if provider.recheckable else None
    async with pool.acquire() as connection, connection.transaction():
        payment = await store.insert(connection, provider=provider.name, currency=currency, amount=amount,
                                     credits_micro=credits_micro, bundle_id=bundle_id, user_id=user_id,
                                     guest_email=guest_email, now=now, next_check_at=next_check_at)
        await store.add_history(connection, payment.id, status="pending", event="created", now=now,
                                detail={"amount": prices.money_text(amount), "currency": currency})
        await audit.record(connection, actor_id=user_id, action="payment.create", target_type="payment",
                           target_id=payment.id, ip=ip,
                           details={"provider": provider.name, "credits_micro": credits_micro, "amount": str(amount),
                                    "currency": currency, "guest": guest_email is not None})
    order = Order(payment.id, amount, currency, credits_micro, description, guest_email,
                  settings.public_url.rstrip("/") + RETURN_PATH)
    try:
        checkout = await provider.create(order)
    except CallbackRejected as error:  # the provider's answer lacked what a checkout needs
        failure = ProviderFailed(f"{provider.name} answered without a usable checkout: {error.message}")
        await _fail(pool, payment, now, failure)
        raise failure from error
    except GatewayError as error:
        await _fail(pool, payment, now, error)
        raise
    return await _attach(pool, payment, checkout, now)


async def _attach(pool: asyncpg.Pool, payment: store.Payment, checkout: Checkout, now: dt.datetime) -> store.Payment:
    try:
        return await store.set_checkout(pool, payment.id, reference=checkout.reference,
                                        payment_url=checkout.payment_url, now=now)
    except asyncpg.UniqueViolationError as error:  # a provider handing out a reference twice
        failure = ProviderFailed(f"{payment.provider} gave a reference it gave before")
        await _fail(pool, payment, now, failure)
        raise failure from error


async def _fail(pool: asyncpg.Pool, payment: store.Payment, now: dt.datetime, error: GatewayError) -> None:
    async with pool.acquire() as connection, connection.transaction():
        failed = dataclasses.replace(payment, status="failed", next_check_at=None)
        await store.save_state(connection, failed, now=now)
        await store.add_history(connection, payment.id, status="failed", event="provider_refused", now=now,
                                detail={"error": error.code, "message": error.message})


def description(credits_micro: int, bundle_name: str | None) -> str:
    from ledger import format_micro

    return f"tollgate: {bundle_name}" if bundle_name else f"tollgate: {format_micro(credits_micro)} credits"


async def guest_account(db: asyncpg.Pool | asyncpg.Connection, email: str) -> int:
    """The account a guest pays into, made (passwordless) at checkout — not when the money arrives —
    so nobody can register the address in between and receive the guest's credits. An earlier
    guest checkout's account is used again; an account someone registered with a password is
    refused (registration does not prove the address): its owner logs in to buy (decision 0017)."""
    user_id = await users.create(db, email=email, password=None)
    if user_id is not None:
        return user_id
    existing = await users.by_email(db, email)
    if existing is None or existing.password_hash is not None or not existing.is_active:
        raise Conflict("an account already uses this address: log in to buy credits for it",
                       code="account_exists")
    return existing.id
