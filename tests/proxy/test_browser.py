"""The desktop path in a real browser (Debian's Chromium, headless, Playwright): a one-time link
opens a browser session; the target's page loads through the gateway with its stylesheet, script,
image and a page-initiated fetch carried by the session cookie alone; a revoked token ends it; a
cross-site form cannot post with it. Screenshots land in tests/artifacts/browser/."""

from __future__ import annotations

import datetime as dt
import json
import logging

from aiohttp import web

from devkit.embedded import free_port
from gateway.accounts import access_tokens
from gateway.proxy.resources import AUTHENTICATOR
from tests.support.accounts import make_token, proxy_headers
from tests.support.browser import chromium_page, shot
from tests.support.proxy import SESSION_COOKIE

PAGE_RESOURCES = ("/browser", "/static/browser.css", "/static/browser.js", "/img/logo.png", "/api/data")


async def one_time_link(gateway, token: str, path: str) -> str:
    response = await gateway.post("/api/v1/proxy/session/link", headers=proxy_headers(token, "laptop"),
                                  json={"path": path})
    assert response.status == 201, await response.text()
    return (await response.json())["url"]


async def test_a_browser_session_from_a_one_time_link_carries_the_whole_page_until_the_token_is_revoked(
        gateway, database, caplog):
    caplog.set_level(logging.DEBUG)
    issued = await make_token(database)
    base = gateway.settings.public_url
    link = await one_time_link(gateway, issued.token, "/browser")
    async with chromium_page() as page:
        answers: dict[str, int] = {}
        page.on("response", lambda response: answers.__setitem__(response.url, response.status))
        landed = await page.goto(link)
        assert landed.status == 200 and page.url == base + "/api/v1/proxy/browser"
        assert landed.request.redirected_from.url == link
        await page.wait_for_function("document.getElementById('fetched').textContent !== 'waiting'")
        await shot(page, "proxy-01-page")

        status, _, body = (await page.inner_text("#fetched")).partition(" ")
        fetched = json.loads(body)
        assert (status, fetched["method"], fetched["received"]) == ("200", "POST", {"hello": "target"})
        # The target's own cookie goes back to it; the gateway's never does.
        assert fetched["cookie"] == "theme=dark"
        assert await page.evaluate("window.scriptRan") is True
        assert await page.evaluate("document.getElementById('logo').naturalWidth") == 1
        assert await page.evaluate("getComputedStyle(document.querySelector('h1')).color") == "rgb(0, 128, 0)"
        assert answers.pop(link) == 303  # the link itself: spent, and off to the page with the cookie
        proxied = {url: status for url, status in answers.items() if url.startswith(base + "/api/v1/proxy/")}
        assert {base + "/api/v1/proxy" + path for path in PAGE_RESOURCES} <= set(proxied)
        assert set(proxied.values()) == {200}
        assert all(url.startswith(base) for url in answers)  # nothing went to the target directly

        cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
        ours = cookies[SESSION_COOKIE]
        assert (ours["httpOnly"], ours["path"], ours["sameSite"], ours["secure"]) == (True, "/", "Lax", False)
        assert ours["value"].startswith(access_tokens.digest(issued.token).hex() + ".")  # not the target's
        assert cookies["theme"]["path"] == "/api/v1/proxy"
        # The access token appears in no URL, cookie or log line.
        assert issued.token not in " ".join(answers) + json.dumps(list(cookies.values())) + caplog.text
        assert ours["value"] not in caplog.text

        token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
        await gateway.app[AUTHENTICATOR].forget(token_hash)
        refused = await page.reload()
        assert refused.status == 401
        assert json.loads(await refused.text())["error"]["code"] in {"token_revoked", "session_ended"}
        await shot(page, "proxy-02-revoked")
        assert SESSION_COOKIE not in {cookie["name"] for cookie in await page.context.cookies()}


async def attacker_page(aiohttp_server, host: str, action: str) -> str:
    """A page on another origin that posts a form to the gateway as soon as it loads."""
    html = (f'<!doctype html><form id="f" method="POST" action="{action}"><input name="amount" value="100">'
            "</form><script>document.getElementById('f').submit()</script>")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    await aiohttp_server(app, port=port)
    return f"http://{host}:{port}/"


async def test_a_form_on_another_origin_cannot_post_with_the_session_cookie(gateway, database, aiohttp_server):
    issued = await make_token(database)
    target = gateway.settings.public_url + "/api/v1/proxy/echo/transfer"
    link = await one_time_link(gateway, issued.token, "/echo/home")
    # Same site, another origin (another port): the browser sends the Lax cookie; the Origin check refuses.
    same_site = await attacker_page(aiohttp_server, "127.0.0.1", target)
    # Another site altogether: SameSite=Lax keeps the cookie from a cross-site POST in the first place.
    cross_site = await attacker_page(aiohttp_server, "localhost", target)
    async with chromium_page() as page:
        assert (await page.goto(link)).status == 200
        for attacker, status, code in ((same_site, 403, "cross_site_request"), (cross_site, 401, "missing_token")):
            async with page.expect_navigation(url=target) as navigation:
                await page.goto(attacker, wait_until="commit")
            answer = await navigation.value
            assert answer.status == status, attacker
            assert json.loads(await answer.text())["error"]["code"] == code
        await shot(page, "proxy-03-cross-site-refused")
        assert (await page.goto(gateway.settings.public_url + "/api/v1/proxy/echo/home")).status == 200
