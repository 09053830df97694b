"""The payments store: the history is append-only in the database itself, references unique per provider."""

from __future__ import annotations

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
