"""The desktop hot path end to end: credentials and device headers, and the status endpoint."""

from __future__ import annotations

from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import error_of

ECHO = "/api/v1/proxy/echo/x"


async def test_a_valid_token_and_device_reach_the_target(gateway, database):
    issued = await make_token(database)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 200
    assert (await response.json())["path"] == "/echo/x"


async def test_a_request_without_token_is_refused_with_401(gateway, database):
    response = await gateway.get(ECHO, headers={"X-Device-ID": "d1"})
    assert response.status == 401
    assert (await error_of(response))["code"] == "missing_token"


async def test_a_missing_device_id_is_a_400(gateway, database):
    issued = await make_token(database)
    response = await gateway.get(ECHO, headers={"X-Access-Token": issued.token})
    assert response.status == 400
    assert (await error_of(response))["code"] == "missing_device_id"


async def test_malformed_device_ids_are_400s(gateway, database):
    issued = await make_token(database)
    for bad in ("x" * 129, "has space", ""):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token, device=bad))
        assert response.status == 400, bad
        assert (await error_of(response))["code"] in {"invalid_device_id", "missing_device_id"}


async def test_two_access_token_headers_are_a_400(gateway, database):
    issued = await make_token(database)
    headers = [("X-Access-Token", issued.token), ("X-Access-Token", issued.token),
               ("X-Device-ID", "d1")]
    response = await gateway.get(ECHO, headers=headers)
    assert response.status == 400


async def test_the_status_endpoint_refuses_a_malformed_device_id(gateway, database):
    issued = await make_token(database)
    response = await gateway.get("/api/v1/proxy/status",
                                 headers={"X-Access-Token": issued.token, "X-Device-ID": "a b"})
    assert response.status == 400


async def test_status_reports_validity_scope_expiry_and_session(gateway, database):
    issued = await make_token(database, scope="certificates_only", hours=2)
    await gateway.get("/api/v1/proxy/certificates/x", headers=proxy_headers(issued.token, "laptop"))
    response = await gateway.get("/api/v1/proxy/status", headers=proxy_headers(issued.token, "laptop"))
    assert response.status == 200
    body = await response.json()
    assert body["valid"] is True
    assert body["token"]["scope"] == "certificates_only"
    assert 7000 < body["token"]["expires_in_s"] <= 7200
    assert body["session"]["device_id"] == "laptop" and body["session"]["this_device"] is True


async def test_status_does_not_bind_a_device(gateway, database):
    issued = await make_token(database)
    response = await gateway.get("/api/v1/proxy/status", headers=proxy_headers(issued.token, "phone"))
    assert (await response.json())["session"] is None
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200


async def test_status_refuses_an_unknown_token(gateway, database):
    response = await gateway.get("/api/v1/proxy/status", headers=proxy_headers("B" * 64))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_token"
