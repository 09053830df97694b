"""/api/v1/currency end to end: balance and transactions, and the admin's adjustments."""

from __future__ import annotations

import pytest

import ledger
from tests.support.accounts import admin, balance_of
from tests.support.api import counts, error_code
from tests.support.purchases import PURCHASE

# -- currency ----------------------------------------------------------------------------------


async def test_balance_and_transactions_show_signed_decimal_strings(gateway, database, buyer, clock):
    await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 12})
    balance = await (await gateway.get("/api/v1/currency/balance", headers=buyer["headers"])).json()
    assert balance["balance"] == "40" and balance["held"] == "0"
    listing = await (await gateway.get("/api/v1/currency/transactions", headers=buyer["headers"])).json()
    assert [(t["type"], t["amount"]) for t in listing["items"]] == [("purchase", "-10"), ("deposit", "50")]
    assert listing["total"] == 2
    deposits = await (await gateway.get("/api/v1/currency/transactions?type=deposit", headers=buyer["headers"])).json()
    assert [t["type"] for t in deposits["items"]] == ["deposit"]
    paged = await (await gateway.get("/api/v1/currency/transactions?skip=1&limit=1", headers=buyer["headers"])).json()
    assert [t["type"] for t in paged["items"]] == ["deposit"]
    for query in ("type=theft", "limit=0", "skip=-5", "limit=abc"):
        response = await gateway.get(f"/api/v1/currency/transactions?{query}", headers=buyer["headers"])
        assert response.status == 400, query


async def test_admins_top_up_and_deduct_with_a_reason(gateway, database, buyer):
    headers = await admin(gateway, database)
    url = f"/api/v1/admin/users/{buyer['id']}/adjust"
    up = await gateway.post(url, headers=headers, json={"credits": "12.345678", "reason": "goodwill"})
    assert up.status == 201
    assert (await up.json())["balance"] == "62.345678"
    down = await gateway.post(url, headers=headers, json={"credits": "-2.345678", "reason": "correction"})
    assert (await down.json())["balance"] == "60"
    too_much = await gateway.post(url, headers=headers, json={"credits": "-61", "reason": "oops"})
    assert (too_much.status, await error_code(too_much)) == (402, "insufficient_balance")
    entry = await database.fetchrow(
        "SELECT actor_id, details FROM audit_log WHERE action = 'credits.adjust' ORDER BY id LIMIT 1")
    assert entry["actor_id"] is not None and "goodwill" in entry["details"]
    listing = await (await gateway.get("/api/v1/currency/transactions?type=adjustment",
                                       headers=buyer["headers"])).json()
    assert [t["amount"] for t in listing["items"]] == ["-2.345678", "12.345678"]


@pytest.mark.parametrize("payload, code", [
    ({"credits": 10, "reason": "r"}, "invalid_field"),
    ({"credits": 10.5, "reason": "r"}, "invalid_field"),
    ({"credits": "0", "reason": "r"}, "invalid_amount"),
    ({"credits": "1.0000001", "reason": "r"}, "invalid_amount"),
    ({"credits": "1e6", "reason": "r"}, "invalid_amount"),
    ({"credits": "NaN", "reason": "r"}, "invalid_amount"),
    ({"credits": "99999999999", "reason": "r"}, "invalid_amount"),
    ({"credits": "10", "reason": ""}, "invalid_reason"),
    ({"credits": "10"}, "missing_field"),
    ({"reason": "r"}, "missing_field"),
])
async def test_bad_adjustments_are_400_and_move_nothing(gateway, database, buyer, payload, code):
    headers = await admin(gateway, database)
    before = await counts(database)
    response = await gateway.post(f"/api/v1/admin/users/{buyer['id']}/adjust", headers=headers, json=payload)
    assert (response.status, await error_code(response)) == (400, code)
    assert await counts(database) == before


async def test_adjusting_needs_an_admin_and_a_real_user(gateway, database, buyer):
    headers = await admin(gateway, database)
    for user_id in ("999999", "abc", "-1", "99999999999999999999"):
        response = await gateway.post(f"/api/v1/admin/users/{user_id}/adjust", headers=headers,
                                      json={"credits": "1", "reason": "r"})
        assert response.status == 404, user_id
    response = await gateway.post(f"/api/v1/admin/users/{buyer['id']}/adjust", headers=buyer["headers"],
                                  json={"credits": "1000", "reason": "self-service"})
    assert response.status == 403
    assert await balance_of(database, buyer["id"]) == 50 * ledger.MICRO_PER_CREDIT


async def test_the_seeds_transaction_type_filter_is_the_type_filter(gateway, database, buyer):
    await gateway.post("/api/v1/tokens/purchase", headers=buyer["headers"], json={"duration_hours": 1})
    base = "/api/v1/currency/transactions"
    seed = await (await gateway.get(f"{base}?transaction_type=purchase", headers=buyer["headers"])).json()
    ours = await (await gateway.get(f"{base}?type=purchase", headers=buyer["headers"])).json()
    assert [item["type"] for item in seed["items"]] == ["purchase"] and seed == ours
    for query in ("transaction_type=gift", "type=deposit&transaction_type=purchase", "kind=purchase"):
        response = await gateway.get(f"{base}?{query}", headers=buyer["headers"])
        assert response.status == 400, query
