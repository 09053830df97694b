"""The desktop path with a browser session's cookie instead of the headers: the same checks and costs
(device, scope, limits, session accounting), the session's end, and the cross-site rule."""

from __future__ import annotations

import datetime as dt

import pytest

from devkit.embedded import free_port
from gateway.accounts import access_tokens
from gateway.proxy.resources import AUTHENTICATOR, SESSIONS
from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import SESSION_COOKIE, cookie_headers, error_of, open_browser_session

ECHO = "/api/v1/proxy/echo/x"


def cleared(response) -> bool:
    """Whether the answer tells the browser to forget the session cookie."""
    return any(value.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in value
               for value in response.headers.getall("Set-Cookie", []))


async def test_the_cookie_alone_reaches_the_target_as_the_device_that_opened_the_session(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token, "laptop")
    response = await gateway.get(ECHO, headers=cookie_headers(value))
    assert response.status == 200
    assert (await response.json())["path"] == "/echo/x"
    # Counted in the same proxy session as the desktop client's own requests.
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    await gateway.app[SESSIONS].flush()
    rows = await database.fetch("SELECT device_id, requests FROM proxy_sessions")
    assert [(row["device_id"], row["requests"]) for row in rows] == [("laptop", 2)]


async def test_a_request_without_any_credential_is_a_401(gateway, database):
    response = await gateway.get(ECHO)
    assert response.status == 401 and (await error_of(response))["code"] == "missing_token"


async def test_the_headers_win_over_the_cookie(gateway, database):
    first, second = await make_token(database), await make_token(database, email="other@example.com")
    value = await open_browser_session(gateway, first.token)
    response = await gateway.get(ECHO, headers={**cookie_headers(value), **proxy_headers(second.token, "d2")})
    assert response.status == 200
    await gateway.app[SESSIONS].flush()
    assert await database.fetchval("SELECT token_id FROM proxy_sessions") == second.id


@pytest.mark.parametrize("value", ["garbage", "a" * 64 + ".short", "A" * 64 + "." + "b" * 43,
                                   "a" * 64 + "." + "b" * 43])
async def test_a_malformed_or_unknown_cookie_is_a_401_that_clears_it(gateway, database, value):
    response = await gateway.get(ECHO, headers=cookie_headers(value))
    assert response.status == 401 and (await error_of(response))["code"] == "invalid_session"
    assert cleared(response)


async def test_two_session_cookies_are_refused_rather_than_one_picked(gateway, database):
    mine, theirs = await make_token(database), await make_token(database, email="other@example.com")
    values = [await open_browser_session(gateway, token) for token in (mine.token, theirs.token)]
    tossed = {"Cookie": f"tollgate_session={values[1]}; tollgate_session={values[0]}"}
    response = await gateway.get(ECHO, headers=tossed)
    assert response.status == 401 and (await error_of(response))["code"] == "invalid_session"


async def test_a_cookie_naming_another_tokens_hash_is_refused(gateway, database):
    mine, theirs = await make_token(database), await make_token(database, email="other@example.com")
    value = await open_browser_session(gateway, mine.token)
    forged = access_tokens.digest(theirs.token).hex() + "." + value.split(".")[1]
    response = await gateway.get(ECHO, headers=cookie_headers(forged))
    assert response.status == 401 and (await error_of(response))["code"] == "invalid_session"


async def test_the_scope_applies_to_the_cookie(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get("/api/v1/proxy/certificates/a", headers=cookie_headers(value))).status == 200
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 403 and (await error_of(refused))["code"] == "scope_denied"


async def test_cookie_and_header_requests_share_the_tokens_rate_window(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 3})
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)  # the first of the three
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    limited = await gateway.get(ECHO, headers=cookie_headers(value))
    assert limited.status == 429 and limited.headers["RateLimit-Limit"] == "3"
    assert not cleared(limited)  # a pause, not the session's end


# The session's end: its token revoked or expired, its own lifetime, another device.


async def test_a_revoked_token_ends_its_browser_sessions_on_the_next_request(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    await gateway.app[AUTHENTICATOR].forget(token_hash)
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] in {"token_revoked", "session_ended"}
    assert cleared(refused)
    assert await database.fetchval("SELECT end_reason FROM browser_sessions") == "token_revoked"


async def test_an_expired_token_ends_its_browser_sessions(gateway, database, clock):
    issued = await make_token(database, hours=1)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    clock.advance(3601)
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] in {"token_expired", "session_expired"}


async def test_a_session_past_its_own_lifetime_is_refused(gateway_factory, database, clock):
    gateway = await gateway_factory(browser_session_ttl_s=120)
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    clock.advance(121)
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] == "session_expired"
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200


async def test_a_device_conflict_ends_the_browser_session_for_good(gateway, database, clock):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token, "laptop")
    clock.advance(301)  # the laptop has gone quiet: the phone may take the token
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    conflict = await gateway.get(ECHO, headers=cookie_headers(value))
    assert conflict.status == 409 and (await error_of(conflict))["code"] == "device_conflict"
    assert cleared(conflict)
    clock.advance(301)  # the phone has gone quiet too: the laptop's browser session stays ended
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] == "session_ended"
    assert await database.fetchval("SELECT end_reason FROM browser_sessions") == "device_conflict"


# Redis down: PostgreSQL vouches for the session, as it does for the token.


async def test_with_redis_down_the_session_is_resolved_from_postgres(gateway_factory, database, clock):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token, "laptop")
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    clock.advance(301)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    conflict = await gateway.get(ECHO, headers=cookie_headers(value))
    assert conflict.status == 409
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] == "session_ended"


async def test_with_redis_down_an_unknown_cookie_never_fails_open(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get(ECHO, headers=cookie_headers("a" * 64 + "." + "b" * 43))
    assert response.status == 401


# Cross-site requests: unsafe methods through the cookie come from the gateway's own pages only.


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_cross_site_unsafe_request_with_the_cookie_is_refused_and_reaches_nothing(gateway, database, method):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    response = await gateway.request(method, ECHO, headers=cookie_headers(value, Origin="http://evil.example"),
                                     data=b"amount=100")
    assert response.status == 403 and (await error_of(response))["code"] == "cross_site_request"
    assert gateway.app[SESSIONS].pending == {}  # refused before authentication: nothing counted


@pytest.mark.parametrize("headers", [{}, {"Origin": "null"}, {"Referer": "http://evil.example/page"},
                                     {"Origin": "http://127.0.0.1:1"}])
async def test_an_unsafe_request_without_the_gateways_origin_is_refused(gateway, database, headers):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    response = await gateway.post(ECHO, headers=cookie_headers(value, **headers), data=b"x")
    assert response.status == 403


async def test_the_gateways_own_pages_may_post_with_the_cookie(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    public = gateway.settings.public_url
    by_origin = await gateway.post(ECHO, headers=cookie_headers(value, Origin=public), data=b"x")
    by_referer = await gateway.post(ECHO, headers=cookie_headers(value, Referer=public + "/api/v1/proxy/"),
                                    data=b"x")
    assert (by_origin.status, by_referer.status) == (200, 200)


async def test_safe_methods_with_the_cookie_need_no_origin(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    response = await gateway.get(ECHO, headers=cookie_headers(value, Origin="http://evil.example"))
    assert response.status == 200


async def test_the_headers_need_no_origin(gateway, database):
    issued = await make_token(database)
    response = await gateway.post(ECHO, headers=proxy_headers(issued.token, Origin="http://evil.example"))
    assert response.status == 200
