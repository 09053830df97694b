"""The gateway's own session cookie: never sent on to the target, never written by it; the origin a
browser names in Origin."""

from __future__ import annotations

import pytest

from gateway.proxy.cookies import gateway_cookie_values, names_gateway_cookie, public_origin, without_gateway_cookie
from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import cookie_headers, open_browser_session

ECHO = "/api/v1/proxy/echo/x"


@pytest.mark.parametrize("header, expected", [
    ("tollgate_session=abc", ""),
    ("a=1; tollgate_session=abc; b=2", "a=1; b=2"),
    ("tollgate_session=abc; a=1", "a=1"),
    ("a=1;tollgate_session=abc", "a=1"),
    ("a=1; tollgate_session", "a=1"),  # a nameless cookie whose value reads as our name
    ("a=1; tollgate_session=x; tollgate_session=y", "a=1"),
    ("a=1; tollgate_sessions=keep; my_tollgate_session=keep", "a=1; tollgate_sessions=keep; my_tollgate_session=keep"),
    ('a="quoted; value"; b=2', 'a="quoted; value"; b=2'),
])
def test_the_gateway_cookie_is_taken_out_of_a_cookie_header_and_the_rest_kept_as_sent(header, expected):
    assert without_gateway_cookie(header) == expected


@pytest.mark.parametrize("headers, values", [
    (["tollgate_session=abc"], ["abc"]),
    (["a=1; tollgate_session=abc; b=2"], ["abc"]),
    (["a=1;tollgate_session = abc "], ["abc"]),
    (["a=1", "tollgate_session=abc"], ["abc"]),
    (["tollgate_session=x; tollgate_session=y"], ["x", "y"]),
    (["a=1; tollgate_session"], []),
    (["tollgate_sessions=1; my_tollgate_session=2; x=tollgate_session"], []),
    ([], []),
])
def test_the_gateway_cookie_is_found_in_the_cookie_headers(headers, values):
    assert gateway_cookie_values(headers) == values


@pytest.mark.parametrize("set_cookie, dropped", [
    ("tollgate_session=evil; Path=/", True),
    (" tollgate_session = evil", True),
    ("tollgate_session", True),
    ("tollgate_session=; Max-Age=0", True),
    ("theme=dark; Path=/", False),
    ("tollgate_sessions=1", False),
    ("x=tollgate_session", False),
    # Nameless (RFC 6265bis 5.6): the browser sends the value alone, "tollgate_session=evil".
    ("=tollgate_session=evil; Path=/", True),
    (" = tollgate_session=evil", True),
    ("=theme=dark", False),
])
def test_a_target_cookie_that_would_write_the_gateways_is_recognised(set_cookie, dropped):
    assert names_gateway_cookie(set_cookie) is dropped


@pytest.mark.parametrize("public_url, origin", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://Gateway.Example:443/base/", "https://gateway.example"),
    ("http://gateway.example:80", "http://gateway.example"),
    ("http://[::1]:8080", "http://[::1]:8080"),
])
def test_the_public_origin_is_written_as_a_browser_writes_origin(public_url, origin):
    assert public_origin(public_url) == origin


async def test_the_gateway_cookie_never_reaches_the_target(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    by_cookie = await gateway.get(ECHO, headers={"Cookie": f"a=1; tollgate_session={value}; b=2"})
    by_headers = await gateway.get(ECHO, headers=proxy_headers(issued.token, Cookie=f"tollgate_session={value}"))
    assert (await by_cookie.json())["headers"]["Cookie"] == "a=1; b=2"
    assert "Cookie" not in (await by_headers.json())["headers"]


async def test_a_target_cookie_named_like_the_gateways_is_dropped_and_the_others_kept(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    response = await gateway.get("/api/v1/proxy/browser", headers=cookie_headers(value))
    assert response.status == 200
    assert response.headers.getall("Set-Cookie") == ["theme=dark; Path=/api/v1/proxy"]
