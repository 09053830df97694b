"""The desktop hot path's gatekeeping: tokens, device binding, scopes and rate limits, over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest

from gateway.core import metrics
from gateway.accounts import access_tokens
from gateway.proxy.resources import AUTHENTICATOR
from tests.conftest import make_token, proxy_headers
from tests.raw_targets import NormalisingTarget

ECHO = "/api/v1/proxy/echo/x"


async def error_of(response) -> dict:
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body["error"]


async def test_a_valid_token_and_device_reach_the_target(gateway, database):
    issued = await make_token(database)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 200
    assert (await response.json())["path"] == "/echo/x"


async def test_a_request_without_token_is_refused_with_401(gateway, database):
    response = await gateway.get(ECHO, headers={"X-Device-ID": "d1"})
    assert response.status == 401
    assert (await error_of(response))["code"] == "missing_token"


async def test_an_unknown_token_is_refused_with_401(gateway, database):
    response = await gateway.get(ECHO, headers=proxy_headers("A" * 64))
    assert response.status == 401
    assert (await error_of(response))["code"] == "invalid_token"


async def test_a_malformed_token_is_refused_without_a_lookup(gateway, database):
    before = metrics.AUTH_CACHE.labels("postgres_fallback")._value.get()
    response = await gateway.get(ECHO, headers=proxy_headers("short token with spaces"))
    assert response.status == 401
    assert (await error_of(response))["code"] == "invalid_token"
    assert metrics.AUTH_CACHE.labels("postgres_fallback")._value.get() == before


async def test_an_expired_token_is_refused_with_401(gateway, database):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    issued = await make_token(database, hours=1, now=past)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_expired"


async def test_a_cached_token_is_refused_once_its_expiry_passes(gateway, database, clock):
    issued = await make_token(database, hours=1)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    clock.advance(3601)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_expired"


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


async def test_a_second_device_gets_409_while_the_first_is_active(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))
    assert response.status == 409
    assert (await error_of(response))["code"] == "device_conflict"
    assert int(response.headers["Retry-After"]) > 0


async def test_the_device_binding_is_released_after_five_idle_minutes(gateway, database, clock):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    clock.advance(299)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409
    clock.advance(301)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 409


async def test_requests_keep_the_binding_alive(gateway, database, clock):
    issued = await make_token(database)
    for _ in range(3):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
        clock.advance(200)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409


async def test_certificates_only_reaches_certificates(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    response = await gateway.get("/api/v1/proxy/certificates/a.pem", headers=proxy_headers(issued.token))
    assert response.status == 200


async def test_certificates_only_is_denied_elsewhere(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    for path in ("/api/v1/proxy/echo/x", "/api/v1/proxy/", "/api/v1/proxy/certificates",
                 "/api/v1/proxy/certificates/%2E%2E/echo/x"):
        response = await gateway.get(path, headers=proxy_headers(issued.token))
        assert response.status == 403, path
        assert (await error_of(response))["code"] == "scope_denied"


async def test_revocation_takes_effect_on_the_next_request(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    await gateway.app[AUTHENTICATOR].forget(token_hash)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_revoked"


async def test_the_plan_limit_answers_429_with_headers(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 3, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    for remaining in (2, 1, 0):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert response.headers["RateLimit-Remaining"] == str(remaining)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 429
    assert (await error_of(response))["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Remaining"] == "0"


async def test_the_window_slides(gateway_factory, database, clock):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    for _ in range(2):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 429
    clock.advance(61)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200


async def test_the_user_limit_spans_the_users_tokens(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    first = await make_token(database)
    second = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 429


async def test_premium_plans_get_the_premium_limit(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 1, "premium": 3, "enterprise": 0})
    issued = await make_token(database, plan="premium")
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_enterprise_is_unlimited(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 1, "premium": 1, "enterprise": 0},
                                    ip_limit_per_min=0)
    issued = await make_token(database, plan="enterprise")
    for _ in range(5):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200
        assert "RateLimit-Limit" not in response.headers


async def test_the_ip_limit_spans_users(gateway_factory, database):
    gateway = await gateway_factory(ip_limit_per_min=2)
    first = await make_token(database, email="a@example.com")
    second = await make_token(database, email="b@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 429


async def test_a_device_conflict_does_not_spend_the_rate_allowance(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200
    for _ in range(3):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "b"))).status == 409
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200


async def test_a_repeated_request_id_does_not_stop_the_count(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 3})
    issued = await make_token(database)
    headers = proxy_headers(issued.token, **{"X-Request-Id": "fixedfixed"})
    statuses = [(await gateway.get(ECHO, headers=headers)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_unknown_tokens_count_against_the_ip_limit(gateway_factory, database):
    gateway = await gateway_factory(ip_limit_per_min=3)
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(f"{i}" * 64))).status for i in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_ambiguous_paths_are_denied_to_certificates_only(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    for path in ("/api/v1/proxy/certificates/..;/echo/x", "/api/v1/proxy/certificates/..%5cecho",
                 "/api/v1/proxy/certificates/%252e%252e/echo", "/api/v1/proxy/certificates//x"):
        response = await gateway.get(path, headers=proxy_headers(issued.token))
        assert response.status == 403, path


async def test_rate_limit_headers_survive_a_scope_denial(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 5})
    issued = await make_token(database, scope="certificates_only")
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 403
    assert response.headers["RateLimit-Remaining"] == "4"


async def test_behind_a_trusted_proxy_the_rightmost_forwarded_address_is_the_client(gateway_factory,
                                                                                  database):
    gateway = await gateway_factory(trust_forwarded=True, ip_limit_per_min=1)
    first = await make_token(database, email="a@example.com")
    second = await make_token(database, email="b@example.com")
    spoofed = {"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token, **spoofed))).status == 200
    rotated = {"X-Forwarded-For": "2.2.2.2, 203.0.113.9"}
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token, **rotated))).status == 429


async def test_the_status_endpoint_refuses_a_malformed_device_id(gateway, database):
    issued = await make_token(database)
    response = await gateway.get("/api/v1/proxy/status",
                                 headers={"X-Access-Token": issued.token, "X-Device-ID": "a b"})
    assert response.status == 400


# The target's base path is a boundary (attack 2026-12-01, M1): with TOLLGATE_TARGET_URL=http://host/app,
# a full-scope token sent `..` and its encodings verbatim and an nginx-like target served /internal.


@pytest.fixture
async def normalising_target(aiohttp_server) -> tuple[NormalisingTarget, str]:
    target = NormalisingTarget()
    server = await aiohttp_server(target.app())
    return target, str(server.make_url("/app"))


async def raw_get(port: int, raw_target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A GET whose request-target goes out exactly as written (no client resolves its dot segments)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET {raw_target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n{head}\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), body


ESCAPES = ["/../internal/secret", "/%2e%2e/internal/x", "/%2E%2e/internal/x", "/.%2e/internal/x",
           "/..%2finternal/x", "/a/..%2F..%2Finternal/x", "/a%2f..%2f..%2finternal", "/x/./../../internal",
           "/..\\internal/x", "/..%5cinternal/x", "/a%5C..%5C..%5Cinternal", "/..;/internal/x",
           "/%2e%2e;jsessionid=1/internal/x", "/..", "/%2e", "/."]


@pytest.mark.parametrize("escape", ESCAPES)
async def test_no_path_leaves_the_targets_base_path(gateway_factory, database, normalising_target, escape):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url)
    issued = await make_token(database)
    status, body = await raw_get(gateway.port, "/api/v1/proxy" + escape, proxy_headers(issued.token))
    assert (status, orjson.loads(body)["error"]["code"], target.raw_paths) == (400, "bad_path", [])


async def test_an_escape_is_refused_on_the_extra_mount_too(gateway_factory, database, normalising_target):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url, target_prefix="/zenzefi")
    issued = await make_token(database)
    status, _ = await raw_get(gateway.port, "/zenzefi/%2e%2e/internal/x", proxy_headers(issued.token))
    assert (status, target.raw_paths) == (400, [])


async def test_legitimate_dots_and_escapes_still_pass_raw(gateway_factory, database, normalising_target):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url)
    issued = await make_token(database)
    raw = "/a%20b/%7Euser/..x/.hidden/x%3By/%2e%2ex?q=%2e%2e/../&r=%2F"
    status, body = await raw_get(gateway.port, "/api/v1/proxy" + raw, proxy_headers(issued.token))
    assert (status, body.split()[0], target.raw_paths) == (200, b"app", ["/app" + raw])
