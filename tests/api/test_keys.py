"""/api/v1/keys end to end: create (shown once), list, revoke."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.accounts import register
from tests.support.api import error_code

KEYS = "/api/v1/keys"


async def test_a_key_is_shown_once_stored_hashed_and_listed_by_prefix(gateway, database):
    user = await register(gateway, "dev@example.com")
    response = await gateway.post(KEYS, headers=user["headers"], json={
        "name": "laptop", "allowed_models": ["gpt-4o-mini"], "ip_allowlist": ["127.0.0.1", "10.0.0.0/8"],
        "rpm_limit": 60, "tpm_limit": 10000, "expires_in_hours": 24})
    assert response.status == 201, await response.text()
    created = await response.json()
    key = created["key"]
    assert key.startswith("tg_") and len(key) == 46 and created["prefix"] == key[:11]
    assert created["ip_allowlist"] == ["127.0.0.1/32", "10.0.0.0/8"]
    row = await database.fetchrow("SELECT key_hash, prefix FROM api_keys WHERE id = $1", created["id"])
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key.encode() not in bytes(row["key_hash"]) and row["prefix"] == key[:11]
    listed = (await (await gateway.get(KEYS, headers=user["headers"])).json())["items"]
    assert [(k["id"], k["prefix"], k["active"]) for k in listed] == [(created["id"], key[:11], True)]
    assert "key" not in listed[0]
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'api_key.create'") == 1


@pytest.mark.parametrize("payload, code", [
    ({"name": "x" * 101}, "invalid_field"),
    ({"name": 5}, "invalid_field"),
    ({"allowed_models": "gpt-4o"}, "invalid_field"),
    ({"allowed_models": [""]}, "invalid_field"),
    ({"allowed_models": [1, 2]}, "invalid_field"),
    ({"ip_allowlist": ["300.1.1.1"]}, "invalid_field"),
    ({"ip_allowlist": ["not an ip"]}, "invalid_field"),
    ({"rpm_limit": -1}, "invalid_field"),
    ({"tpm_limit": 10**12}, "invalid_field"),
    ({"rpm_limit": "60"}, "invalid_field"),
    ({"expires_in_hours": 0}, "invalid_field"),
    ({"expires_in_hours": 1.5}, "invalid_field"),
    ({"colour": "red"}, "unknown_field"),
])
async def test_bad_key_requests_are_400_and_create_nothing(gateway, database, payload, code):
    user = await register(gateway, "bad@example.com")
    response = await gateway.post(KEYS, headers=user["headers"], json=payload)
    assert (response.status, await error_code(response)) == (400, code)
    assert await database.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_keys_need_a_login(gateway, database):
    assert (await gateway.post(KEYS, json={})).status == 401
    assert (await gateway.get(KEYS)).status == 401


async def test_another_users_key_cannot_be_revoked(gateway, database):
    owner = await register(gateway, "owner@example.com")
    other = await register(gateway, "other@example.com")
    created = await (await gateway.post(KEYS, headers=owner["headers"], json={})).json()
    for path in (f"{KEYS}/{created['id']}", f"{KEYS}/99999", f"{KEYS}/abc", f"{KEYS}/-1"):
        response = await gateway.delete(path, headers=other["headers"])
        assert (response.status, await error_code(response)) == (404, "key_not_found"), path
    assert await database.fetchval("SELECT revoked_at FROM api_keys") is None
    assert (await gateway.delete(f"{KEYS}/{created['id']}", headers=owner["headers"])).status == 200
    listed = (await (await gateway.get(KEYS, headers=owner["headers"])).json())["items"]
    assert listed[0]["active"] is False and listed[0]["revoked_at"]
