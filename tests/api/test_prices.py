"""/api/v1/admin/prices end to end: the model price table as decimal strings, admins only."""

from __future__ import annotations

import pytest

from gateway.accounts import users
from tests.support.accounts import register
from tests.support.api import error_code

# -- prices ------------------------------------------------------------------------------------


async def admin_headers(gateway, database) -> dict:
    await users.ensure_admin(database, email="root@example.com", password="admin password 1")
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "admin password 1"})
    return {"Authorization": f"Bearer {(await login.json())['access_token']}"}


async def test_admins_read_and_set_prices_as_decimal_strings(gateway, database):
    headers = await admin_headers(gateway, database)
    listed = (await (await gateway.get("/api/v1/admin/prices", headers=headers)).json())["items"]
    mini = next(p for p in listed if p["model"] == "gpt-4o-mini")
    assert (mini["input_per_mtok"], mini["output_per_mtok"], mini["cached_input_per_mtok"]) == ("0.15", "0.6", "0.075")
    response = await gateway.put("/api/v1/admin/prices/gpt-4o-mini", headers=headers, json={
        "input_per_mtok": "0.2", "output_per_mtok": "0.8", "cached_input_per_mtok": "0.1"})
    assert response.status == 200
    row = await database.fetchrow("SELECT * FROM model_prices WHERE model = 'gpt-4o-mini'")
    assert (row["input_per_mtok_micro"], row["output_per_mtok_micro"], row["cached_input_per_mtok_micro"]) == \
        (200_000, 800_000, 100_000)
    created = await gateway.put("/api/v1/admin/prices/claude-new-model", headers=headers, json={
        "input_per_mtok": "1", "output_per_mtok": "2", "cached_input_per_mtok": "0.5", "max_output_tokens": 4096})
    assert (await created.json())["provider"] == "anthropic"
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'price.update'") == 2


@pytest.mark.parametrize("model, payload, code", [
    ("gpt-4o", {"input_per_mtok": 1, "output_per_mtok": "1", "cached_input_per_mtok": "1"}, "invalid_field"),
    ("gpt-4o", {"input_per_mtok": "-1", "output_per_mtok": "1", "cached_input_per_mtok": "1"}, "invalid_amount"),
    ("gpt-4o", {"input_per_mtok": "1.0000001", "output_per_mtok": "1", "cached_input_per_mtok": "1"}, "invalid_amount"),
    ("gpt-4o", {"output_per_mtok": "1", "cached_input_per_mtok": "1"}, "missing_field"),
    ("gpt-4o", {"input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1", "x": 1}, "unknown_field"),
    ("mystery-model", {"input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1"},
     "invalid_provider"),
    ("gpt-4o", {"input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1",
                "max_output_tokens": 0}, "invalid_field"),
    ("bad model!", {"input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1"}, "invalid_model"),
])
async def test_bad_prices_are_400_and_change_nothing(gateway, database, model, payload, code):
    headers = await admin_headers(gateway, database)
    before = await database.fetch("SELECT * FROM model_prices ORDER BY model")
    response = await gateway.put(f"/api/v1/admin/prices/{model}", headers=headers, json=payload)
    assert (response.status, await error_code(response)) == (400, code)
    assert await database.fetch("SELECT * FROM model_prices ORDER BY model") == before


async def test_clients_cannot_see_or_set_prices(gateway, database):
    user = await register(gateway, "client@example.com")
    assert (await gateway.get("/api/v1/admin/prices", headers=user["headers"])).status == 403
    response = await gateway.put("/api/v1/admin/prices/gpt-4o", headers=user["headers"], json={
        "input_per_mtok": "0", "output_per_mtok": "0", "cached_input_per_mtok": "0"})
    assert response.status == 403
    assert await database.fetchval("SELECT input_per_mtok_micro FROM model_prices WHERE model = 'gpt-4o'") == 2_500_000
