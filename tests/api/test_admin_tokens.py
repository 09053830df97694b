"""The admin token endpoints: issue a token once shown, revoke it for the very next request."""

from __future__ import annotations

from gateway.accounts import users
from tests.support.accounts import ADMIN, admin_headers, make_token, proxy_headers


async def test_an_admin_issues_a_token_that_works_once_shown(gateway, database):
    headers = await admin_headers(gateway, database)
    await users.ensure_client(database, email="desk@example.com")
    response = await gateway.post("/api/v1/admin/tokens", headers=headers,
                                  json={"email": "desk@example.com", "hours": 1, "scope": "full"})
    assert response.status == 201
    issued = await response.json()
    assert len(issued["token"]) == 64
    stored = await database.fetchval("SELECT token_hash FROM access_tokens WHERE id = $1", issued["id"])
    assert issued["token"].encode() not in bytes(stored)
    proxied = await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued["token"]))
    assert proxied.status == 200
    entry = await database.fetchrow("SELECT action, actor_id, target_id FROM audit_log WHERE action = 'token.issue'")
    admin_id = await database.fetchval("SELECT id FROM users WHERE email = $1", ADMIN["email"])
    assert (entry["actor_id"], entry["target_id"]) == (admin_id, str(issued["id"]))


async def test_issuing_rejects_bad_fields(gateway, database):
    headers = await admin_headers(gateway, database)
    await users.ensure_client(database, email="desk@example.com")
    for body in ({"email": "desk@example.com", "hours": 0}, {"email": "desk@example.com", "hours": -1},
                 {"email": "desk@example.com", "hours": 10**9}, {"email": "desk@example.com", "hours": "1"},
                 {"email": "desk@example.com", "hours": True},
                 {"email": "desk@example.com", "hours": 1, "scope": "admin"}, {"hours": 1},
                 {"user_id": 2**70, "hours": 1}, {"user_id": "1", "hours": 1}):
        response = await gateway.post("/api/v1/admin/tokens", headers=headers, json=body)
        assert response.status == 400, body
    assert await database.fetchval("SELECT count(*) FROM access_tokens") == 0


async def test_issuing_for_an_unknown_user_is_404(gateway, database):
    headers = await admin_headers(gateway, database)
    for body in ({"email": "ghost@example.com", "hours": 1}, {"user_id": 999999, "hours": 1},
                 {"user_id": 2**62, "hours": 1}, {"user_id": 0, "hours": 1}):
        response = await gateway.post("/api/v1/admin/tokens", headers=headers, json=body)
        assert response.status == 404, body


async def test_a_client_cannot_use_admin_endpoints(gateway, database):
    await users.create(database, email="c@example.com", password="client password")
    login = await gateway.post("/api/v1/auth/login", json={"email": "c@example.com",
                                                           "password": "client password"})
    token = (await login.json())["access_token"]
    response = await gateway.post("/api/v1/admin/tokens", headers={"Authorization": f"Bearer {token}"},
                                  json={"email": "c@example.com", "hours": 1})
    assert response.status == 403


async def test_revoking_refuses_the_next_request(gateway, database):
    headers = await admin_headers(gateway, database)
    issued = await make_token(database)
    assert (await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token))).status == 200
    response = await gateway.delete(f"/api/v1/admin/tokens/{issued.id}", headers=headers)
    assert response.status == 200
    proxied = await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token))
    assert proxied.status == 401
    assert (await proxied.json())["error"]["code"] == "token_revoked"
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'token.revoke_without_refund' "
                                   "AND target_id = $1", str(issued.id)) == 1


async def test_revoking_an_unknown_token_is_404(gateway, database):
    headers = await admin_headers(gateway, database)
    for token_id in ("999999", "abc", str(2**70)):
        response = await gateway.delete(f"/api/v1/admin/tokens/{token_id}", headers=headers)
        assert response.status == 404, token_id


async def test_a_lifetime_that_rounds_to_nothing_is_a_400(gateway, database):
    headers = await admin_headers(gateway, database)
    response = await gateway.post("/api/v1/admin/tokens", headers=headers,
                                  json={"email": ADMIN["email"], "hours": 1e-12})
    assert response.status == 400
