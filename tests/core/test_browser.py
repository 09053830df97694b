"""Browsers: CORS for the configured origins (preflight 204, credentials), security headers on every
answer, no framing of tollgate's own HTML, HSTS behind https; the proxied target's answers stay its own."""

from __future__ import annotations

import pytest

from gateway.core.browser import parse_origins
from gateway.core.config import ConfigError
from tests.support.accounts import make_token, proxy_headers, register

APP = "https://app.example.com"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "PATCH",
             "Access-Control-Request-Headers": "authorization, content-type"}


@pytest.fixture
async def browser_gateway(gateway_factory):
    return await gateway_factory(cors_origins=f"{APP}, http://localhost:3000")


@pytest.mark.parametrize("path", ["/api/v1/keys/1", "/openai/v1/chat/completions", "/api/v1/generate"])
async def test_a_preflight_from_a_configured_origin_is_granted_with_credentials(browser_gateway, database, path):
    response = await browser_gateway.options(path, headers=PREFLIGHT)
    assert response.status == 204 and await response.read() == b""
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin" and int(response.headers["Access-Control-Max-Age"]) > 0


async def test_a_preflight_from_any_other_origin_is_refused(browser_gateway, database):
    response = await browser_gateway.options("/api/v1/keys", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status == 403 and (await response.json())["error"]["code"] == "cors_origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_without_configured_origins_no_origin_is_granted(gateway, database):
    response = await gateway.options("/api/v1/keys", headers=PREFLIGHT)
    assert response.status == 403 and "Access-Control-Allow-Origin" not in response.headers
    answer = await gateway.get("/api/v1/bundles", headers={"Origin": APP})
    assert answer.status == 200 and "Access-Control-Allow-Origin" not in answer.headers


async def test_an_answer_names_the_allowed_origin_and_exposes_the_request_id(browser_gateway, database):
    user = await register(browser_gateway, "browser@example.com")
    mine = await browser_gateway.get("/api/v1/keys", headers={**user["headers"], "Origin": APP})
    assert mine.status == 200 and mine.headers["Access-Control-Allow-Origin"] == APP
    assert mine.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-Id" in mine.headers["Access-Control-Expose-Headers"] and mine.headers["Vary"] == "Origin"
    refused = await browser_gateway.get("/api/v1/keys", headers={"Origin": APP})  # errors too
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == APP
    other = await browser_gateway.get("/api/v1/keys", headers={**user["headers"], "Origin": "https://evil.example"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers


async def test_a_preflight_on_the_proxied_target_goes_to_the_target(browser_gateway, database):
    issued = await make_token(database)
    response = await browser_gateway.options("/api/v1/proxy/echo", headers={**PREFLIGHT,
                                                                            **proxy_headers(issued.token)})
    assert response.status == 200 and (await response.json())["method"] == "OPTIONS"  # the target's echo
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_every_answer_carries_the_security_headers(gateway, database):
    for response in (await gateway.get("/health"), await gateway.get("/api/v1/bundles"),
                     await gateway.get("/api/v1/keys"), await gateway.get("/no/such/path")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in response.headers  # the public URL is http here


async def test_tollgates_own_html_may_not_be_framed_but_the_targets_keeps_its_rules(gateway, database):
    page = await gateway.get("/api/v1/payments/return/success")
    assert page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    issued = await make_token(database)
    proxied = await gateway.get("/api/v1/proxy/", headers=proxy_headers(issued.token))
    assert proxied.status == 200 and proxied.content_type == "text/html"
    assert "X-Frame-Options" not in proxied.headers and "Content-Security-Policy" not in proxied.headers
    assert proxied.headers["X-Content-Type-Options"] == "nosniff"


async def test_hsts_is_sent_when_the_public_url_is_https(gateway_factory, database):
    gateway = await gateway_factory(public_url="https://gateway.example.com")
    response = await gateway.get("/health")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("raw", ["*", "https://*.example.com", "app.example.com", "https://app.example.com/path",
                                 "ftp://app.example.com", "https://user@app.example.com"])
def test_anything_but_an_origin_stops_start_up(raw):
    with pytest.raises(ConfigError):
        parse_origins(raw)


def test_origins_are_normalised():
    assert parse_origins(" https://App.Example.com:8443/ ,http://localhost:3000") == {
        "https://app.example.com:8443", "http://localhost:3000"}
