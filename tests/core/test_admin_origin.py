"""The admin UI's origin (decision 0027), through HTTP against the real server: on a listener of its
own the main port has none of it and it serves nothing else; without one it is off unless asked for
on the main origin; wherever it is, a request a script made or a POST from another origin is
refused before anything changes, and its answers isolate their window."""

from __future__ import annotations

import pytest

import ledger
from gateway.core.admin_origin import AdminOrigin
from gateway.core.config import ConfigError, Settings
from tests.support.admin_ui import csrf_of, logged_in, staff, state

SCRIPTED = ({"Sec-Fetch-Mode": "cors"}, {"Sec-Fetch-Mode": "same-origin"}, {"Sec-Fetch-Mode": "no-cors"})


async def on_main_port(gateway, method: str, path: str, **kwargs):
    """A request to the gateway's main port (the test client sends /admin paths to the admin listener)."""
    return await gateway.session.request(method, gateway.server.make_url(path), allow_redirects=False, **kwargs)


async def test_with_a_listener_of_its_own_the_main_port_answers_404_under_admin(gateway, database):
    await staff(database)
    csrf = await logged_in(gateway, "root@example.com")  # a session, whose cookie the main port would see
    for method, path in (("GET", "/admin/"), ("GET", "/admin"), ("GET", "/admin/login"), ("GET", "/admin/users"),
                         ("GET", "/admin/static/admin.css"), ("POST", "/admin/logout")):
        answer = await on_main_port(gateway, method, path, data={"csrf_token": csrf})
        assert answer.status == 404, (method, path)
    assert (await gateway.get("/admin/users")).status == 200  # the session lives on: logout never ran


async def test_the_admin_listener_serves_nothing_but_the_admin_ui(gateway, database):
    admin = gateway.admin_base
    for path in ("/health", "/api/v1/bundles", "/api/v1/proxy/echo/x", "/openai/v1/models", "/zenzefi/x"):
        async with gateway.session.get(admin + path) as answer:
            assert answer.status == 404, path
    async with gateway.session.get(admin + "/admin/login") as answer:
        assert answer.status == 200


async def test_login_a_page_and_a_form_post_work_on_the_admin_listener(gateway, database):
    people = await staff(database)
    csrf = await logged_in(gateway, "root@example.com")
    page = await gateway.get(f"/admin/users/{people.client}")
    assert page.status == 200 and "alice@example.com" in await page.text()
    assert str(page.url).startswith(gateway.admin_base)
    answer = await gateway.post(f"/admin/users/{people.client}/adjust", allow_redirects=False, data={
        "csrf_token": csrf, "credits": "7", "reason": "welcome", "idempotency_key": "origin-test-1234567890"},
        headers={"Origin": gateway.admin_base, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"})
    assert answer.status == 303, await answer.text()
    assert (await ledger.balance(database, people.client)).available_micro == 7_000_000


async def test_a_request_a_script_made_is_refused_and_changes_nothing(gateway, database):
    people = await staff(database)
    csrf = await logged_in(gateway, "root@example.com")
    before = await state(database)
    for headers in SCRIPTED:
        page = await gateway.get("/admin/users", headers=headers)
        assert page.status == 403 and "scripted" in await page.text(), headers
        assert "alice@example.com" not in await page.text()
        answer = await gateway.post(f"/admin/users/{people.client}/adjust", headers=headers, data={
            "csrf_token": csrf, "credits": "7", "reason": "x", "idempotency_key": "scripted-1234567890"})
        assert answer.status == 403, headers
    assert await state(database) == before
    # Its own stylesheet, which a page loads in no-cors mode, is served.
    assert (await gateway.get("/admin/static/admin.css", headers={"Sec-Fetch-Mode": "no-cors"})).status == 200


@pytest.mark.parametrize("headers", [{"Origin": "MAIN"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Sec-Fetch-Site": "cross-site"}])
async def test_a_form_posted_from_another_origin_is_refused_and_changes_nothing(gateway, database, headers):
    """The target's pages are same-site with the admin listener (another port of the host): a form
    there posts with the SameSite=Strict cookie; the CSRF token stops it, and so do these."""
    people = await staff(database)
    csrf = await logged_in(gateway, "root@example.com")
    headers = {name: str(gateway.server.make_url("")).rstrip("/") if value == "MAIN" else value
               for name, value in headers.items()}
    before = await state(database)
    answer = await gateway.post(f"/admin/users/{people.client}/adjust", allow_redirects=False, data={
        "csrf_token": csrf, "credits": "7", "reason": "x", "idempotency_key": "foreign-1234567890"},
        headers={"Sec-Fetch-Mode": "navigate", **headers})
    assert answer.status == 403 and "cross site request" in await answer.text()
    assert await state(database) == before


async def test_its_answers_isolate_their_window_errors_and_stylesheet_included(gateway, database):
    await staff(database)
    await logged_in(gateway, "root@example.com")
    for path in ("/admin/", "/admin/users/999999", "/admin/static/admin.css", "/admin/no-such-page"):
        answer = await gateway.get(path)
        assert answer.headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert answer.headers["Cross-Origin-Resource-Policy"] == "same-origin", path


async def test_without_a_listener_of_its_own_the_admin_ui_is_off(gateway_factory, database):
    gateway = await gateway_factory(admin_on_main_origin=False)
    await staff(database)
    answer = await gateway.get("/admin/login")
    assert answer.status == 404 and "TOLLGATE_ADMIN_LISTEN" in await answer.text()
    assert (await gateway.get("/health")).status == 200


async def test_on_the_main_origin_when_asked_with_script_made_requests_still_refused(gateway_factory, database):
    gateway = await gateway_factory(admin_on_main_origin=True)
    await staff(database)
    csrf = await logged_in(gateway, "root@example.com")
    assert gateway.admin_base == str(gateway.server.make_url("")).rstrip("/")
    assert (await gateway.get("/admin/users", headers={"Sec-Fetch-Mode": "navigate"})).status == 200
    assert (await gateway.get("/admin/users", headers={"Sec-Fetch-Mode": "cors"})).status == 403
    answer = await gateway.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False,
                                headers={"Origin": gateway.admin_base})
    assert answer.status == 303
    assert csrf_of(await (await gateway.get("/admin/login")).text())


@pytest.mark.parametrize("changes, named", [
    ({"admin_listen": "localhost"}, "ADMIN_LISTEN must be host:port"),
    ({"admin_listen": "127.0.0.1:http"}, "ADMIN_LISTEN must be host:port"),
    ({"admin_listen": "127.0.0.1:8080"}, "a port other than"),
    ({"admin_listen": "127.0.0.1:9100", "metrics_port": 9100}, "a port other than"),
    ({"admin_listen": "127.0.0.1:8081", "admin_on_main_origin": True}, "contradict"),
    ({"admin_public_url": "https://admin.example"}, "which is not set"),
    ({"admin_listen": "127.0.0.1:8081", "admin_public_url": "https://admin.example/admin"}, "must be an origin"),
    ({"target_prefix": "/admin/"}, "TARGET_PREFIX must not be /admin"),
])
def test_settings_that_cannot_work_stop_start_up_naming_the_setting(changes, named):
    with pytest.raises(ConfigError, match=named):
        Settings(port=8080, **changes)


@pytest.mark.parametrize("changes, origin", [
    ({"admin_listen": "127.0.0.1:8081"}, ("http://127.0.0.1:8081", False)),
    ({"admin_listen": "[::1]:8081"}, ("http://[::1]:8081", False)),
    ({"admin_listen": "0.0.0.0:8081", "admin_public_url": "https://Admin.Example/"}, ("https://admin.example", True)),
    ({"admin_on_main_origin": True, "public_url": "https://gw.example/base"}, ("https://gw.example", True)),
])
def test_the_admin_origin_is_its_public_url_or_its_listener(changes, origin):
    admin = AdminOrigin.from_settings(Settings(port=8080, **changes))
    assert (admin.origin, admin.https) == origin
