"""The payments store: the history is append-only in the database itself, references unique per provider."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from tests.support.accounts import register
from tests.support.payments import buy


async def test_the_database_refuses_to_change_the_payment_history(pay_gateway, database):
    user = await register(pay_gateway, "payer@example.com")
    await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    for statement in ("UPDATE payment_history SET status = 'paid'", "DELETE FROM payment_history",
                      "TRUNCATE payment_history CASCADE"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await database.execute(statement)


async def test_a_provider_reference_belongs_to_one_payment(pay_gateway, database):
    user = await register(pay_gateway, "payer@example.com")
    first = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    second = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    reference = await database.fetchval("SELECT provider_reference FROM payments WHERE id = $1", first["payment_id"])
    with pytest.raises(asyncpg.UniqueViolationError):
        await database.execute("UPDATE payments SET provider_reference = $1 WHERE id = $2", reference,
                               second["payment_id"])


async def test_a_credited_payment_must_name_its_transfer(pay_gateway, database):
    user = await register(pay_gateway, "payer@example.com")
    payment = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    with pytest.raises(asyncpg.CheckViolationError):
        await database.execute("UPDATE payments SET status = 'paid' WHERE id = $1", payment["payment_id"])


async def test_a_history_detail_with_a_nul_from_a_provider_is_kept_without_it(database):
    """Review of issue 9: jsonb cannot hold \\u0000, and a provider's value carrying one made the
    callback a 500; the history keeps the detail without the NUL."""
    from gateway.payments import store

    payment_id = await database.fetchval(
        "INSERT INTO payments (provider, currency, amount, credits_micro, status, guest_email, created_at, "
        "updated_at) VALUES ('stripe', 'USD', 1, 1000000, 'pending', 'nul@example.com', now(), now()) RETURNING id")
    async with database.acquire() as connection:
        await store.add_history(connection, payment_id, status="pending", event="checkout.session.expired",
                                now=dt.datetime.now(dt.timezone.utc), detail={"reason": "odd\x00value"})
    detail = await database.fetchval("SELECT detail->>'reason' FROM payment_history WHERE payment_id = $1", payment_id)
    assert detail == "oddvalue"
