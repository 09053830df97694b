"""Settlement: what a verified callback or a re-check says, applied to its payment exactly once.

Each event is one PostgreSQL transaction holding the payment's row lock: the status change, its
history row, its audit entry and the money commit together. A credit is a ledger transfer from
payment_clearing to the user keyed on the provider's reference (Stripe: the Checkout Session id),
so a replayed, duplicated, concurrent or out-of-order callback credits once; the deposit then
repays a debt first. A refund takes its share of the credits back through ledger.take_back: as far
as the balance allows, the rest owed; it counts only for the PaymentIntent the payment was paid with,
never credits by itself (a charge's metadata can name any payment). Money that arrived always wins:
a paid event credits a payment marked failed or expired; a failure or expiry never undoes a credit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.accounts import audit, users
from gateway.core import metrics
from gateway.payments import store
from gateway.payments.providers import (EXPIRED, FAILED, PAID, REFUNDED, CallbackRejected, Event)

FINAL = ("paid", "partially_refunded", "refunded")


@dataclass(frozen=True, slots=True)
class Settled:
    payment: store.Payment
    changed: bool                     # a status change was written now
    credited_micro: int = 0
    guest_email: str | None = None    # a guest's payment was credited now: mail them a login link
    rejection: CallbackRejected | None = None  # recorded, and to be answered with a 400


def credit_key(payment: store.Payment) -> str:
    return f"payment:{payment.provider}:{payment.provider_reference or payment.id}"


async def payment_for(db: asyncpg.Pool, provider: str, event: Event) -> int:
    """The payment an event is about: by the provider's reference, else Stripe's PaymentIntent, else
    the order id the provider echoes (Robokassa's InvId; a refunded charge's metadata)."""
    found = None
    if event.reference is not None:
        found = await store.find(db, provider, reference=event.reference)
    elif event.provider_payment is not None:
        found = await store.find(db, provider, provider_payment=event.provider_payment) or event.payment_id
    if found is None or (event.payment_id is not None and found != event.payment_id):
        raise CallbackRejected(f"no {provider} payment matches this callback", code="unknown_payment")
    return found


def _mismatch(payment: store.Payment, event: Event) -> str | None:
    """Why the event cannot be about this payment's money, or None when it fits."""
    if event.reference is not None and payment.provider_reference != event.reference:
        return "the callback names another reference"
    if event.payment_id is not None and event.payment_id != payment.id:
        return "the callback names another order"
    if event.status == REFUNDED:
        # Only a charge this payment was paid with can be refunded: its PaymentIntent, learnt when the
        # session was paid (the webhook first asks Stripe about a payment whose paid event is missing).
        if payment.transfer_id is None or payment.provider_payment != event.provider_payment:
            return "the refund names a charge this payment was not paid with"
    elif event.provider_payment and payment.provider_payment not in (None, event.provider_payment):
        return "the callback names another payment intent"
    if event.currency is not None and event.currency != payment.currency:
        return f"currency {event.currency} differs from the payment's {payment.currency}"
    if event.status == PAID and event.amount is not None and event.amount != payment.amount:
        return f"amount {event.amount} differs from the payment's {payment.amount}"
    return None


async def apply(pool: asyncpg.Pool, provider: str, event: Event, *, payment_id: int, now: dt.datetime,
                source: str) -> Settled:
    async with pool.acquire() as connection, connection.transaction():
        payment = await store.lock(connection, payment_id)
        if payment is None or payment.provider != provider:
            raise CallbackRejected("no such payment", code="unknown_payment")
        problem = _mismatch(payment, event)
        if problem is not None:
            await store.add_history(connection, payment.id, status=payment.status, event=f"rejected:{event.name}",
                                    now=now, detail={"reason": problem, "source": source})
            await _audit(connection, payment, "payment.callback_rejected", {"reason": problem, "event": event.name})
            return Settled(payment, False, rejection=CallbackRejected(problem, code="payment_mismatch"))
        if event.status == PAID:
            return await _credit(connection, payment, event, now, source)
        if event.status == REFUNDED:
            return await _refund(connection, payment, event, now, source)
        if event.status in (FAILED, EXPIRED) and payment.status == "pending":
            changed = dataclasses.replace(payment, status=event.status, next_check_at=None)
            await _record(connection, changed, event, now, source)
            return Settled(changed, True)
        return Settled(payment, False)


async def _record(connection: asyncpg.Connection, payment: store.Payment, event: Event, now: dt.datetime,
                  source: str, detail: dict | None = None) -> None:
    """The payment's new state, its history row and audit entry, in the caller's transaction."""
    await store.save_state(connection, payment, now=now)
    details = {"event": event.name, "source": source, **event.detail, **(detail or {})}
    await store.add_history(connection, payment.id, status=payment.status, event=event.name, now=now, detail=details)
    await _audit(connection, payment, f"payment.{payment.status}", details)


async def _audit(connection: asyncpg.Connection, payment: store.Payment, action: str, details: dict) -> None:
    await audit.record(connection, actor_id=None, action=action, target_type="payment", target_id=payment.id,
                       ip="", details={"provider": payment.provider, "user_id": payment.user_id, **details})


async def _owner(connection: asyncpg.Connection, payment: store.Payment) -> tuple[int, bool]:
    """The paying user; a guest's account is found by email or made (passwordless) now."""
    if payment.user_id is not None:
        return payment.user_id, False
    assert payment.guest_email is not None
    user_id = await users.create(connection, email=payment.guest_email, password=None)
    if user_id is not None:
        return user_id, True
    existing = await users.by_email(connection, payment.guest_email)
    assert existing is not None
    return existing.id, False


async def _credit(connection: asyncpg.Connection, payment: store.Payment, event: Event, now: dt.datetime,
                  source: str) -> Settled:
    if payment.transfer_id is not None:
        return Settled(payment, False)  # a replay, a twin event, or a re-check after the webhook
    user_id, _created = await _owner(connection, payment)
    account = await ledger.user_account(connection, user_id)
    clearing = await ledger.system_id(connection, "payment_clearing")
    key = credit_key(payment)
    transfer = await ledger.move(
        connection, key=key, debit=clearing, credit=account, amount_micro=payment.credits_micro, kind="deposit",
        now=now, user_id=user_id, description=f"{payment.provider} payment {payment.id}",
        metadata={"payment_id": payment.id, "bundle_id": payment.bundle_id})
    repaid = await ledger.repay(connection, key=key + ":repay", account_id=account, to_account_id=clearing,
                                user_id=user_id, now=now, metadata={"payment_id": payment.id})
    credited = dataclasses.replace(payment, status="paid", transfer_id=transfer.id, user_id=user_id, paid_at=now,
                                   next_check_at=None,
                                   provider_payment=event.provider_payment or payment.provider_payment)
    await _record(connection, credited, event, now, source,
                  {"transfer_id": transfer.id, "credits_micro": payment.credits_micro, "debt_repaid_micro": repaid})
    return Settled(credited, True, payment.credits_micro, payment.guest_email)


async def _refund(connection: asyncpg.Connection, payment: store.Payment, event: Event, now: dt.datetime,
                  source: str) -> Settled:
    """Take back the refunded share of the credits (cumulative, so a replay or an older event moves nothing)."""
    assert event.refunded is not None and payment.transfer_id is not None, "_mismatch lets only a paid one by"
    refunded, charged = event.refunded
    target = payment.credits_micro if refunded >= charged else payment.credits_micro * refunded // charged
    due = target - payment.refunded_micro
    if due <= 0:
        return Settled(payment, False)
    assert payment.user_id is not None
    taken = await ledger.take_back(
        connection, key=f"{credit_key(payment)}:refund:{target}", account_id=await ledger.user_account(
            connection, payment.user_id), to_account_id=await ledger.system_id(connection, "payment_clearing"),
        amount_micro=due, user_id=payment.user_id, now=now, description=f"refund of payment {payment.id}",
        metadata={"payment_id": payment.id})
    status = "refunded" if target == payment.credits_micro else "partially_refunded"
    refunded_payment = dataclasses.replace(payment, status=status, refunded_micro=target)
    await _record(connection, refunded_payment, event, now, source,
                  {"taken_micro": taken.taken_micro, "owed_micro": taken.owed_micro, "refunded_micro": target})
    return Settled(refunded_payment, True)


def observe(provider: str, settled: Settled) -> None:
    """The payment metrics, after the transaction committed."""
    if settled.changed:
        metrics.labelled(metrics.PAYMENTS, provider, settled.payment.status).inc()
    if settled.credited_micro:
        metrics.labelled(metrics.PAYMENT_CREDITS, provider).inc(settled.credited_micro)
