"""/api/v1/bundles end to end: the public list, purchase, and the admin's create, update and delete."""

from __future__ import annotations

import pytest

import ledger
from tests.support.accounts import admin, balance_of, deposit, register

# -- bundles -----------------------------------------------------------------------------------


async def test_the_four_default_bundles_are_listed_with_savings(gateway, database):
    response = await gateway.get("/api/v1/bundles")
    items = (await response.json())["items"]
    assert len(items) == 4
    for item in items:
        assert 10 <= item["savings_percent"] <= 20
        assert ledger.parse_credits(item["price"]) + ledger.parse_credits(item["savings"]) == \
            ledger.parse_credits(item["regular_price"])
    day_pack = next(i for i in items if i["name"] == "Day pack")
    assert (day_pack["price"], day_pack["regular_price"], day_pack["price_per_token"]) == ("81", "90", "16.2")
    one = await gateway.get(f"/api/v1/bundles/{day_pack['id']}")
    assert (await one.json())["name"] == "Day pack"
    for bad in ("999", "x", "0", "-3"):
        assert (await gateway.get(f"/api/v1/bundles/{bad}")).status == 404


async def test_buying_a_bundle_issues_its_tokens_whose_prices_sum_to_the_bundle(gateway, database):
    user = await register(gateway, "bulk@example.com")
    await deposit(database, user["id"], 200)
    bundles = (await (await gateway.get("/api/v1/bundles")).json())["items"]
    ten_days = next(b for b in bundles if b["name"] == "Ten days")
    response = await gateway.post(f"/api/v1/bundles/{ten_days['id']}/purchase", headers=user["headers"])
    assert response.status == 201
    bought = await response.json()
    assert len(bought["tokens"]) == 10 and len({t["token"] for t in bought["tokens"]}) == 10
    assert await balance_of(database, user["id"]) == 47 * ledger.MICRO_PER_CREDIT
    assert bought["new_balance"] == "47"  # the seed's client reads the balance the purchase left
    shares = await database.fetchval("SELECT sum(price_micro) FROM access_tokens WHERE bundle_id = $1", ten_days["id"])
    assert shares == 153 * ledger.MICRO_PER_CREDIT


async def test_admins_create_update_and_soft_delete_bundles(gateway, database):
    headers = await admin(gateway, database)
    created = await gateway.post("/api/v1/admin/bundles", headers=headers, json={
        "name": "Trial", "token_count": 2, "duration_hours": 1, "price": "1.5"})
    assert created.status == 201
    bundle = await created.json()
    assert (bundle["savings"], bundle["price_per_token"]) == ("0.5", "0.75")
    patched = await gateway.patch(f"/api/v1/admin/bundles/{bundle['id']}", headers=headers, json={"price": "1.8"})
    assert (await patched.json())["price"] == "1.8"
    deleted = await gateway.delete(f"/api/v1/admin/bundles/{bundle['id']}", headers=headers)
    assert deleted.status == 200
    assert (await gateway.get(f"/api/v1/bundles/{bundle['id']}")).status == 404
    assert await database.fetchval("SELECT deleted_at IS NOT NULL FROM bundles WHERE id = $1", bundle["id"])
    actions = await database.fetch("SELECT action FROM audit_log WHERE target_type = 'bundle' ORDER BY id")
    assert [a["action"] for a in actions] == ["bundle.create", "bundle.update", "bundle.delete"]


@pytest.mark.parametrize("payload", [
    {"name": "", "token_count": 2, "duration_hours": 1, "price": "1"},
    {"name": "X", "token_count": 0, "duration_hours": 1, "price": "1"},
    {"name": "X", "token_count": 1000, "duration_hours": 1, "price": "1"},
    {"name": "X", "token_count": 2, "duration_hours": 0, "price": "1"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "0"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "-1"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": 1.5},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "1e9"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "99999999999"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "1", "scope": "root"},
    {"name": "X", "token_count": 2, "duration_hours": 1, "price": "1", "colour": "red"},
    {"token_count": 2, "duration_hours": 1, "price": "1"},
])
async def test_bad_bundles_are_400_and_create_nothing(gateway, database, payload):
    headers = await admin(gateway, database)
    response = await gateway.post("/api/v1/admin/bundles", headers=headers, json=payload)
    assert response.status == 400, payload
    assert await database.fetchval("SELECT count(*) FROM bundles") == 4


async def test_clients_cannot_manage_bundles(gateway, database, buyer):
    response = await gateway.post("/api/v1/admin/bundles", headers=buyer["headers"], json={
        "name": "Free", "token_count": 100, "duration_hours": 720, "price": "0.000001"})
    assert response.status == 403
    assert (await gateway.delete("/api/v1/admin/bundles/1", headers=buyer["headers"])).status == 403
    assert await database.fetchval("SELECT count(*) FROM bundles WHERE deleted_at IS NULL") == 4
