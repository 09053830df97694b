"""Browser sessions over HTTP: opened with the desktop client's headers or a one-time link, the
cookie's attributes as configured, logging out."""

from __future__ import annotations

import datetime as dt
from http.cookies import SimpleCookie

import pytest

from gateway.accounts import access_tokens
from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import SESSION_COOKIE, cookie_headers, error_of, open_browser_session

SESSION = "/api/v1/proxy/session"
LINK = "/api/v1/proxy/session/link"
ECHO = "/api/v1/proxy/echo/x"


def set_cookie_of(response) -> SimpleCookie:
    """The Set-Cookie headers of a response as the browser reads them (name -> morsel)."""
    jar: SimpleCookie = SimpleCookie()
    for value in response.headers.getall("Set-Cookie", []):
        jar.load(value)
    return jar


def raw_set_cookie(response) -> str:
    return "\n".join(response.headers.getall("Set-Cookie", []))


async def make_link(gateway, token: str, device: str = "device-1", **body) -> dict:
    response = await gateway.post(LINK, headers=proxy_headers(token, device), json=body or None)
    assert response.status == 201, await response.text()
    return await response.json()


async def follow(gateway, url: str):
    """Open a link as the system browser would (without following its redirect)."""
    response = await gateway.get(url.removeprefix(gateway.settings.public_url), allow_redirects=False)
    gateway.session.cookie_jar.clear()
    return response


# Opening a session with the headers: the cookie and its attributes.


async def test_opening_a_session_sets_an_http_only_lax_cookie_for_every_path_holding_no_token(gateway, database):
    issued = await make_token(database)
    response = await gateway.post(SESSION, headers=proxy_headers(issued.token, "laptop"))
    assert response.status == 201
    body = await response.json()
    assert body["device_id"] == "laptop" and 0 < body["expires_in_s"] <= 12 * 3600
    cookie = set_cookie_of(response)[SESSION_COOKIE]
    assert (cookie["httponly"], cookie["path"], cookie["samesite"], cookie["secure"]) == (True, "/", "Lax", "")
    assert int(cookie["max-age"]) == body["expires_in_s"]
    assert issued.token not in raw_set_cookie(response) and issued.token not in await response.text()
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_cookie_is_secure_and_same_site_none_when_configured(gateway_factory, database):
    gateway = await gateway_factory(cookie_secure="true", cookie_samesite="none")
    issued = await make_token(database)
    response = await gateway.post(SESSION, headers=proxy_headers(issued.token))
    cookie = set_cookie_of(response)[SESSION_COOKIE]
    assert (cookie["secure"], cookie["samesite"], cookie["httponly"], cookie["path"]) == (True, "None", True, "/")


async def test_an_https_public_url_makes_the_cookie_secure_by_default(gateway_factory, database):
    gateway = await gateway_factory(public_url="https://gateway.example", cookie_samesite="strict")
    issued = await make_token(database)
    response = await gateway.post(SESSION, headers=proxy_headers(issued.token))
    cookie = set_cookie_of(response)[SESSION_COOKIE]
    assert (cookie["secure"], cookie["samesite"]) == (True, "Strict")


async def test_a_session_never_outlives_its_token(gateway, database):
    issued = await make_token(database, hours=1)
    response = await gateway.post(SESSION, headers=proxy_headers(issued.token))
    assert 3500 < int(set_cookie_of(response)[SESSION_COOKIE]["max-age"]) <= 3600


async def test_a_session_is_not_opened_for_an_unknown_token_or_another_device(gateway, database):
    issued = await make_token(database)
    unknown = await gateway.post(SESSION, headers=proxy_headers("U" * 64))
    assert unknown.status == 401 and "Set-Cookie" not in unknown.headers
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    conflict = await gateway.post(SESSION, headers=proxy_headers(issued.token, "phone"))
    assert conflict.status == 409 and "Set-Cookie" not in conflict.headers
    assert await database.fetchval("SELECT count(*) FROM browser_sessions") == 0


async def test_only_a_hash_of_the_session_id_is_stored(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token, "laptop")
    row = await database.fetchrow("SELECT * FROM browser_sessions")
    assert row["device_id"] == "laptop" and row["session_hash"] != value.encode()
    assert value.split(".")[1].encode() not in b"".join(str(v).encode() for v in row.values())


# The one-time link: made with the headers, spent once by the system browser.


async def test_a_one_time_link_opens_a_session_once_and_lands_on_the_target(gateway, database):
    issued = await make_token(database)
    link = await make_link(gateway, issued.token)
    assert link["url"].startswith(gateway.settings.public_url + LINK + "?code=") and link["expires_in_s"] == 60
    assert issued.token not in link["url"]
    opened = await follow(gateway, link["url"])
    assert opened.status == 303
    assert opened.headers["Location"] == gateway.settings.public_url + "/api/v1/proxy/"
    assert (opened.headers["Cache-Control"], opened.headers["Referrer-Policy"]) == ("no-store", "no-referrer")
    value = set_cookie_of(opened)[SESSION_COOKIE].value
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    again = await follow(gateway, link["url"])
    assert again.status == 401 and (await error_of(again))["code"] == "invalid_link"
    assert "Set-Cookie" not in again.headers


async def test_a_link_lands_on_the_path_it_was_made_for(gateway, database):
    issued = await make_token(database)
    link = await make_link(gateway, issued.token, path="/page2?from=desktop")
    opened = await follow(gateway, link["url"])
    assert opened.headers["Location"] == gateway.settings.public_url + "/api/v1/proxy/page2?from=desktop"


@pytest.mark.parametrize("path", ["//evil.example/", "https://evil.example/", "/../admin", "/a/%2e%2e/b",
                                  "page", "/a\\b", "/new\nline", "/trailing\n", 7])
async def test_a_link_to_anything_but_a_target_path_is_refused(gateway, database, path):
    issued = await make_token(database)
    response = await gateway.post(LINK, headers=proxy_headers(issued.token), json={"path": path})
    assert response.status == 400
    assert (await error_of(response))["code"] in {"invalid_path", "invalid_field"}
    assert await database.fetchval("SELECT count(*) FROM browser_session_links") == 0


async def test_a_link_opened_too_late_is_refused(gateway, database, clock):
    issued = await make_token(database)
    link = await make_link(gateway, issued.token)
    clock.advance(61)
    opened = await follow(gateway, link["url"])
    assert opened.status == 401 and "Set-Cookie" not in opened.headers


async def test_a_link_of_a_token_revoked_before_it_is_opened_is_refused(gateway, database):
    issued = await make_token(database)
    link = await make_link(gateway, issued.token)
    await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    opened = await follow(gateway, link["url"])
    assert opened.status == 401 and "Set-Cookie" not in opened.headers
    assert await database.fetchval("SELECT count(*) FROM browser_sessions") == 0


@pytest.mark.parametrize("query", ["", "?code=", "?code=abc", "?code=" + "A" * 43, "?code=x&code=y"])
async def test_a_link_without_a_valid_code_is_refused(gateway, database, query):
    opened = await gateway.get(LINK + query, allow_redirects=False)
    assert opened.status == 401 and (await error_of(opened))["code"] == "invalid_link"


async def test_a_head_request_does_not_spend_a_link(gateway, database):
    issued = await make_token(database)
    link = await make_link(gateway, issued.token)
    probe = await gateway.head(link["url"].removeprefix(gateway.settings.public_url), allow_redirects=False)
    assert probe.status != 303
    assert (await follow(gateway, link["url"])).status == 303


# Logging out.


async def test_logout_with_the_cookie_ends_that_session_at_once(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    origin = {"Origin": gateway.settings.public_url}
    response = await gateway.delete(SESSION, headers=cookie_headers(value, **origin))
    assert response.status == 204
    cleared = set_cookie_of(response)[SESSION_COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    refused = await gateway.get(ECHO, headers=cookie_headers(value))
    assert refused.status == 401 and (await error_of(refused))["code"] == "session_ended"
    assert await database.fetchval("SELECT end_reason FROM browser_sessions") == "logout"


async def test_logout_with_the_headers_ends_every_browser_session_of_the_token(gateway, database):
    issued = await make_token(database)
    values = [await open_browser_session(gateway, issued.token) for _ in range(2)]
    response = await gateway.delete(SESSION, headers=proxy_headers(issued.token))
    assert response.status == 200 and (await response.json()) == {"ended": 2}
    for value in values:
        assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 401
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200  # the token lives on


async def test_a_cross_site_logout_is_refused(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    response = await gateway.delete(SESSION, headers=cookie_headers(value, Origin="http://evil.example"))
    assert response.status == 403 and (await error_of(response))["code"] == "cross_site_request"
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200

