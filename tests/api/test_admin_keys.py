"""Staff over a user's API keys: list and revoke, admins everyone's, managers their clients' only."""

from __future__ import annotations

from tests.support.accounts import admin_headers
from tests.support.api import error_of
from tests.support.staff import managed


async def _key(gateway, user: dict) -> int:
    response = await gateway.post("/api/v1/keys", headers=user["headers"], json={
        "name": "k", "budget": {"limit": "3", "period": "total"}})
    assert response.status == 201
    return (await response.json())["id"]


async def test_a_manager_lists_and_revokes_their_clients_keys_and_nobody_elses(gateway, database):
    staff = await managed(gateway, database)
    mine, theirs = await _key(gateway, staff.client), await _key(gateway, staff.stranger)
    listed = await gateway.get(f"/api/v1/admin/users/{staff.client['id']}/keys", headers=staff.manager["headers"])
    items = (await listed.json())["items"]
    assert [(item["id"], item["budget"]["limit"]) for item in items] == [(mine, "3")]
    assert "key" not in items[0] and "key_hash" not in items[0]
    assert await error_of(await gateway.get(f"/api/v1/admin/users/{staff.stranger['id']}/keys",
                                            headers=staff.manager["headers"]), 404) == "user_not_found"
    assert await error_of(await gateway.post(f"/api/v1/admin/keys/{theirs}/revoke",
                                             headers=staff.manager["headers"]), 404) == "key_not_found"
    revoked = await gateway.post(f"/api/v1/admin/keys/{mine}/revoke", headers=staff.manager["headers"])
    assert revoked.status == 200 and (await revoked.json())["user_id"] == staff.client["id"]
    assert await database.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", mine)
    assert await database.fetchval("SELECT revoked_at IS NULL FROM api_keys WHERE id = $1", theirs)
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'api_key.force_revoke'") == 1


async def test_an_admin_reaches_every_users_keys_and_a_client_none(gateway, database):
    staff = await managed(gateway, database)
    key_id = await _key(gateway, staff.stranger)
    headers = await admin_headers(gateway, database)
    listed = await gateway.get(f"/api/v1/admin/users/{staff.stranger['id']}/keys", headers=headers)
    assert [item["id"] for item in (await listed.json())["items"]] == [key_id]
    assert await error_of(await gateway.get(f"/api/v1/admin/users/{staff.stranger['id']}/keys",
                                            headers=staff.client["headers"]), 403) == "role_required"
    assert (await gateway.post(f"/api/v1/admin/keys/{key_id}/revoke", headers=headers)).status == 200
