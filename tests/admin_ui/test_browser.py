"""The admin UI in a real browser: Debian's Chromium, headless, driven by Playwright for Python
(scripts/bootstrap.sh installs both; never `playwright install`). One staff member's session, end to
end: log in, the dashboard with its charts, find a user, top them up, revoke a token, export the
ledger as CSV, erase a user, log out — with a screenshot of each step in tests/artifacts/browser/."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import ledger
from tests.support.accounts import deposit, make_token, proxy_headers
from tests.support.admin_ui import PASSWORD, person
from tests.support.browser import ARTIFACTS, chromium_page, shot


@pytest.fixture
async def browser_page():
    print(f"\nscreenshots: {ARTIFACTS}")
    async with chromium_page(accept_downloads=True, viewport={"width": 1280, "height": 900}) as page:
        yield page


async def test_a_staff_members_session_end_to_end(gateway, database, browser_page):
    page, base = browser_page, gateway.admin_base  # the admin UI's own origin (decision 0027)
    await person(database, "root@example.com", role="admin")
    alice = await person(database, "alice@example.com", username="alice", full_name="Alice Example")
    eve = await person(database, "eve@example.com", full_name="Eve Leaving")
    token = await make_token(database, email="alice@example.com")
    await deposit(database, alice, 10)  # something for the dashboard's charts to draw
    await database.execute("""
        INSERT INTO ai_usage (request_id, user_id, provider, model, input_tokens, output_tokens, charged_micro,
                              outcome, created_at)
        VALUES ('r1', $1, 'openai', 'gpt-4o-mini', 1200, 300, 2500000, 'ok', now())""", alice)
    assert (await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(token.token))).status == 200

    await page.goto(base + "/admin/")  # no session: the login form
    await page.fill("input[name=email]", "root@example.com")
    await page.fill("input[name=password]", PASSWORD)
    await shot(page, "01-login")
    await page.click("button[type=submit]")
    await page.wait_for_selector("h1:has-text('Dashboard')")
    assert await page.locator("svg.chart").count() == 5
    await shot(page, "02-dashboard")

    await page.click("nav >> text=Users")
    await page.fill("input[name=search]", "alice")
    await page.click("form.filters button")
    await page.click("#users >> text=alice@example.com")
    await page.wait_for_selector("h1:has-text('alice@example.com')")
    await page.fill("#adjust input[name=credits]", "25")
    await page.fill("#adjust input[name=reason]", "welcome credit")
    await page.click("#adjust button")
    await page.wait_for_selector("text=Credits adjusted.")
    assert (await page.inner_text("#balance")).strip() == "35"
    assert (await ledger.balance(database, alice)).available_micro == 35_000_000
    await shot(page, "03-topped-up")

    await page.click(f"#tokens form[action='/admin/tokens/{token.id}/revoke'] button")
    await page.wait_for_selector("text=Access token revoked.")
    await shot(page, "04-token-revoked")
    refused = await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(token.token))
    assert refused.status == 401

    await page.click("nav >> text=Ledger")
    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    rows = list(csv.reader(io.StringIO(Path(await download.path()).read_text())))
    assert rows[0][0] == "id" and [row[2] for row in rows[1:]] == ["adjustment", "deposit"]
    await shot(page, "05-ledger")

    await page.goto(f"{base}/admin/users/{eve}")
    await page.fill("#erase input[name=confirm]", "eve@example.com")
    await page.click("#erase button")
    await page.wait_for_selector("text=User erased.")
    assert await page.locator("h1:has-text('erased-')").count() == 1
    assert await database.fetchval("SELECT count(*) FROM users WHERE email = 'eve@example.com'") == 0
    await shot(page, "06-erased")

    await page.click("header button:has-text('Log out')")
    await page.wait_for_selector("text=Logged out.")
    await shot(page, "07-logged-out")
    await page.goto(base + "/admin/users")
    await page.wait_for_selector("input[name=password]")  # the session is over: back to the form
    assert await database.fetchval("SELECT count(*) FROM admin_sessions") == 0


# A proxied target's page whose script (the target's own, or an XSS on it) goes for the admin UI the
# person at this browser is logged in to: reading a page (and with it the CSRF token), directly and
# through a window it opens.
ATTACK_PAGE = """<!doctype html><title>target</title><pre id="out">waiting</pre><script>
const urls = ["/admin/users", "ADMIN/admin/users"];
async function read(url) {
  try {
    const answer = await fetch(url, {credentials: "include"});
    const text = await answer.text();
    return answer.status + (text.includes("alice@example.com") ? " READ" : " unread");
  } catch (error) { return "blocked"; }
}
async function peek(url) {
  const opened = window.open(url);
  for (let i = 0; i < 30; i++) {
    await new Promise(done => setTimeout(done, 100));
    try {
      if (opened.document.body && opened.document.body.innerText.includes("alice@example.com")) return "READ";
    } catch (error) { return "blocked"; }
  }
  return "unread";
}
(async () => {
  const out = {};
  for (const url of urls) { out["fetch " + url] = await read(url); out["open " + url] = await peek(url); }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script>"""


@pytest.mark.parametrize("own_origin", [True, False], ids=["admin-listener", "main-origin-opt-in"])
async def test_a_proxied_pages_script_cannot_read_the_admin_ui(gateway_factory, database, aiohttp_server,
                                                               own_origin):
    from aiohttp import web

    from tests.support.proxy import SESSION_COOKIE

    async def attack_page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_PAGE.replace("ADMIN", gateway.admin_base), content_type="text/html")

    target = web.Application()
    target.router.add_get("/", attack_page)
    upstream = await aiohttp_server(target)
    gateway = await gateway_factory(target_url=str(upstream.make_url("")).rstrip("/"),
                                    **({} if own_origin else {"admin_on_main_origin": True}))
    await person(database, "root@example.com", role="admin")
    await person(database, "alice@example.com")
    token = await make_token(database)
    link = await gateway.post("/api/v1/proxy/session/link", headers=proxy_headers(token.token), json={"path": "/"})
    assert link.status == 201, await link.text()
    async with chromium_page() as page:
        await page.goto(gateway.admin_base + "/admin/login")  # the admin logs in ...
        await page.fill("input[name=email]", "root@example.com")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1:has-text('Dashboard')")
        await page.goto((await link.json())["url"])  # ... then browses the proxied target
        assert SESSION_COOKIE in {cookie["name"] for cookie in await page.context.cookies()}
        await page.wait_for_function("document.getElementById('out').textContent !== 'waiting'", timeout=20_000)
        outcome = json.loads(await page.inner_text("#out"))
        await shot(page, f"admin-origin-{'own' if own_origin else 'main'}")
    assert not [what for what, result in outcome.items() if "READ" in result], outcome
    if own_origin:  # the main origin has no admin UI; the admin origin gives a script nothing to read
        assert outcome["fetch /admin/users"] == "404 unread"
        assert outcome[f"fetch {gateway.admin_base}/admin/users"] == "blocked"
    else:  # on the same origin, its requests are refused (Fetch Metadata), its window is cut off (COOP)
        assert outcome["fetch /admin/users"] == "403 unread"
