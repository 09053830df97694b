"""The payments table and its append-only history: every statement on them lives here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

COLUMNS = ("id, provider, provider_reference, provider_payment, currency, amount, credits_micro, bundle_id, "
           "status, user_id, guest_email, payment_url, transfer_id, refunded_micro, created_at, updated_at, "
           "paid_at, next_check_at")
INSERT = f"""
INSERT INTO payments (provider, currency, amount, credits_micro, bundle_id, status, user_id, guest_email,
                      created_at, updated_at, next_check_at)
VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8, $9) RETURNING {COLUMNS}"""
SET_CHECKOUT = f"""
UPDATE payments SET provider_reference = $2, payment_url = $3, updated_at = $4 WHERE id = $1 RETURNING {COLUMNS}"""
LOCK = f"SELECT {COLUMNS} FROM payments WHERE id = $1 FOR UPDATE"
SELECT_ONE = f"SELECT {COLUMNS} FROM payments WHERE id = $1"
BY_REFERENCE = "SELECT id FROM payments WHERE provider = $1 AND provider_reference = $2"
BY_PROVIDER_PAYMENT = "SELECT id FROM payments WHERE provider = $1 AND provider_payment = $2"
SAVE_STATE = """
UPDATE payments SET status = $2, transfer_id = $3, refunded_micro = $4, user_id = $5,
       provider_payment = COALESCE($6, provider_payment), paid_at = $7, next_check_at = $8, updated_at = $9
WHERE id = $1"""
INSERT_HISTORY = """
INSERT INTO payment_history (payment_id, status, event, detail, created_at) VALUES ($1, $2, $3, $4::jsonb, $5)"""
SELECT_HISTORY = """
SELECT status, event, detail, created_at FROM payment_history WHERE payment_id = $1 ORDER BY id"""
# A user's own, or everyone's ($1 NULL: the admin's list), newest first.
SELECT_PAGE = f"""
SELECT {COLUMNS} FROM payments WHERE ($1::bigint IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC LIMIT $3 OFFSET $4"""
# What staff see: a manager only their clients' payments ($1: the manager, NULL for an admin), newest
# first in keyset pages; a guest payment not tied to any account only an admin.
SELECT_STAFF_PAGE = f"""
SELECT p.{COLUMNS.replace(", ", ", p.")}, u.email FROM payments p LEFT JOIN users u ON u.id = p.user_id
WHERE ($1::bigint IS NULL OR (u.manager_id = $1 AND u.role = 'client'))
  AND ($2::text IS NULL OR p.status = $2) AND ($3::text IS NULL OR p.provider = $3)
  AND ($4::bigint IS NULL OR p.user_id = $4) AND ($5::bigint IS NULL OR p.id < $5)
ORDER BY p.id DESC LIMIT $6"""
SELECT_STAFF_ONE = f"""
SELECT p.{COLUMNS.replace(", ", ", p.")}, u.email FROM payments p LEFT JOIN users u ON u.id = p.user_id
WHERE p.id = $2 AND ($1::bigint IS NULL OR (u.manager_id = $1 AND u.role = 'client'))"""
COUNT_PAGE = """
SELECT count(*) FROM payments WHERE ($1::bigint IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)"""
# Claimed by one worker at a time: the claim moves the next check on, so others skip it.
CLAIM_DUE = """
UPDATE payments SET next_check_at = $2 WHERE id IN (
    SELECT id FROM payments
    WHERE next_check_at <= $1 AND status = 'pending' AND provider_reference IS NOT NULL AND provider = ANY($3)
    ORDER BY next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING id, provider, provider_reference, created_at"""
STATUSES = ("pending", "paid", "failed", "expired", "partially_refunded", "refunded")


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    provider: str
    provider_reference: str | None
    provider_payment: str | None
    currency: str
    amount: Decimal
    credits_micro: int
    bundle_id: int | None
    status: str
    user_id: int | None
    guest_email: str | None
    payment_url: str
    transfer_id: int | None
    refunded_micro: int
    created_at: dt.datetime
    updated_at: dt.datetime
    paid_at: dt.datetime | None
    next_check_at: dt.datetime | None


def _payment(row: asyncpg.Record | None) -> Payment | None:
    return None if row is None else Payment(**dict(row))


async def insert(connection: asyncpg.Connection, *, provider: str, currency: str, amount: Decimal,
                 credits_micro: int, bundle_id: int | None, user_id: int | None, guest_email: str | None,
                 now: dt.datetime, next_check_at: dt.datetime | None) -> Payment:
    row = await connection.fetchrow(INSERT, provider, currency, amount, credits_micro, bundle_id, user_id,
                                    guest_email, now, next_check_at)
    payment = _payment(row)
    assert payment is not None
    return payment


async def set_checkout(connection: asyncpg.Connection | asyncpg.Pool, payment_id: int, *, reference: str,
                       payment_url: str, now: dt.datetime) -> Payment:
    payment = _payment(await connection.fetchrow(SET_CHECKOUT, payment_id, reference, payment_url, now))
    assert payment is not None
    return payment


async def lock(connection: asyncpg.Connection, payment_id: int) -> Payment | None:
    assert connection.is_in_transaction(), "the lock would end with the statement"
    return _payment(await connection.fetchrow(LOCK, payment_id))


async def get(db: asyncpg.Connection | asyncpg.Pool, payment_id: int) -> Payment | None:
    return _payment(await db.fetchrow(SELECT_ONE, payment_id))


async def find(db: asyncpg.Connection | asyncpg.Pool, provider: str, *, reference: str | None = None,
               provider_payment: str | None = None) -> int | None:
    """A payment's id by the provider's reference, or by Stripe's PaymentIntent."""
    if reference is not None:
        return await db.fetchval(BY_REFERENCE, provider, reference)
    if provider_payment is not None:
        return await db.fetchval(BY_PROVIDER_PAYMENT, provider, provider_payment)
    return None


async def save_state(connection: asyncpg.Connection, payment: Payment, *, now: dt.datetime) -> None:
    await connection.execute(SAVE_STATE, payment.id, payment.status, payment.transfer_id, payment.refunded_micro,
                             payment.user_id, payment.provider_payment, payment.paid_at, payment.next_check_at, now)


async def add_history(connection: asyncpg.Connection, payment_id: int, *, status: str, event: str,
                      now: dt.datetime, detail: dict[str, Any] | None = None) -> None:
    text = orjson.dumps(_without_nul(detail or {}), default=str).decode()
    await connection.execute(INSERT_HISTORY, payment_id, status, event[:100], text, now)


def _without_nul(value: Any) -> Any:
    """PostgreSQL's jsonb cannot hold NUL (\u0000): a provider's odd value is kept without it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nul(item) for item in value]
    return value


async def history(db: asyncpg.Connection | asyncpg.Pool, payment_id: int) -> list[asyncpg.Record]:
    return await db.fetch(SELECT_HISTORY, payment_id)


async def page(db: asyncpg.Connection | asyncpg.Pool, *, user_id: int | None, status: str | None,
               limit: int, skip: int) -> tuple[list[Payment], int]:
    rows = await db.fetch(SELECT_PAGE, user_id, status, limit, skip)
    total = await db.fetchval(COUNT_PAGE, user_id, status)
    return [Payment(**dict(row)) for row in rows], total


async def staff_page(db: asyncpg.Connection | asyncpg.Pool, scope: int | None, *, status: str | None,
                     provider: str | None, user_id: int | None, before_id: int | None,
                     limit: int) -> list[asyncpg.Record]:
    """Payments as staff see them (the admin UI): `scope` is the manager's id, None for an admin."""
    return await db.fetch(SELECT_STAFF_PAGE, scope, status, provider, user_id, before_id, limit)


async def staff_one(db: asyncpg.Connection | asyncpg.Pool, scope: int | None, payment_id: int | None
                    ) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_STAFF_ONE, scope, payment_id) if payment_id is not None else None


async def claim_due(db: asyncpg.Pool, *, now: dt.datetime, next_check_at: dt.datetime, providers: list[str],
                    batch_max: int) -> list[asyncpg.Record]:
    return await db.fetch(CLAIM_DUE, now, next_check_at, providers, batch_max)
