"""Logging in and out of the admin UI: staff only, the session cookie's flags, the login form's own
CSRF token, the JSON API's login brakes, and sessions that end at logout and at deactivation."""

from __future__ import annotations

from tests.support.admin_ui import csrf_of, log_in, logged_in, person


async def session_count(database) -> int:
    return await database.fetchval("SELECT count(*) FROM admin_sessions")


async def test_an_admin_logs_in_and_gets_an_httponly_strict_cookie_scoped_to_the_admin_ui(gateway, people):
    answer = await log_in(gateway, "root@example.com")
    assert answer.status == 303 and answer.headers["Location"] == "/admin/"
    cookie = next(value for name, value in answer.headers.items()
                  if name == "Set-Cookie" and "tollgate_admin=" in value)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http in this test
    assert (await gateway.get("/admin/")).status == 200


async def test_behind_https_the_session_cookie_is_secure(gateway_factory, database):
    gateway = await gateway_factory(public_url="https://gateway.example", admin_public_url="https://admin.example")
    await person(database, "root@example.com", role="admin")
    page = await gateway.get("/admin/login")
    token = csrf_of(await page.text())
    assert "Secure" in page.headers["Set-Cookie"]
    # The test client speaks plain http, so it keeps Secure cookies to itself: sent by hand here.
    answer = await gateway.post("/admin/login", data={"csrf_token": token, "email": "root@example.com",
                                                      "password": "correct horse battery"},
                                cookies={"tollgate_admin_login": token}, allow_redirects=False)
    assert answer.status == 303
    cookies = [value for name, value in answer.headers.items() if name == "Set-Cookie"]
    assert any("tollgate_admin=" in c and "Secure" in c and "HttpOnly" in c for c in cookies), cookies


async def test_a_client_account_cannot_log_in(gateway, database, people):
    answer = await log_in(gateway, "alice@example.com")
    assert answer.status == 403
    assert "cannot sign in to the admin UI" in await answer.text()
    assert await session_count(database) == 0
    followed = await gateway.get("/admin/", allow_redirects=False)
    assert followed.status == 303 and followed.headers["Location"].startswith("/admin/login")


async def test_a_wrong_password_makes_no_session(gateway, database, people):
    answer = await log_in(gateway, "root@example.com", password="wrong password!")
    assert answer.status == 401 and "Wrong email or password" in await answer.text()
    assert await session_count(database) == 0


async def test_a_login_post_without_the_forms_token_is_refused(gateway, database, people):
    await gateway.get("/admin/login")  # the cookie half only
    answer = await gateway.post("/admin/login", data={"email": "root@example.com", "password": "correct horse battery"},
                                allow_redirects=False)
    assert answer.status == 403 and "text/html" in answer.headers["Content-Type"]
    assert await session_count(database) == 0


async def test_the_json_apis_login_brake_applies_to_the_form(gateway_factory, database):
    gateway = await gateway_factory(auth_ip_limit_per_min=2)
    await person(database, "root@example.com", role="admin")
    statuses = [(await log_in(gateway, "root@example.com", password="wrong password!")).status for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_logout_ends_the_session_on_the_server(gateway, database, people):
    csrf = await logged_in(gateway, "root@example.com")
    cookie = gateway.session.cookie_jar.filter_cookies(gateway.make_url("/admin/"))["tollgate_admin"].value
    answer = await gateway.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert answer.status == 303
    assert await session_count(database) == 0
    replayed = await gateway.get("/admin/", cookies={"tollgate_admin": cookie}, allow_redirects=False)
    assert replayed.status == 303 and replayed.headers["Location"].startswith("/admin/login")
    actions = await database.fetch("SELECT action, actor_id, ip FROM audit_log ORDER BY id")
    assert [(a["action"], a["actor_id"], a["ip"]) for a in actions] == [
        ("admin_ui.login", people.admin, "127.0.0.1"), ("admin_ui.logout", people.admin, "127.0.0.1")]


async def test_deactivating_a_manager_ends_their_session(as_admin, as_manager, people):
    assert (await as_manager.get("/admin/users")).status == 200
    answer = await as_admin.post(f"/admin/users/{people.manager}/update",
                                 data={"csrf_token": as_admin.csrf, "is_active": "false"}, allow_redirects=False)
    assert answer.status == 303
    after = await as_manager.get("/admin/users", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"].startswith("/admin/login")


async def test_after_login_the_browser_goes_back_only_to_a_page_of_ours(gateway, people):
    page = await gateway.get("/admin/login?next=//evil.example/x")
    assert 'value="/admin/"' in await page.text()
    answer = await gateway.post("/admin/login", data={"csrf_token": csrf_of(await page.text()),
                                                      "email": "root@example.com", "password": "correct horse battery",
                                                      "next": "//evil.example/x"}, allow_redirects=False)
    assert answer.headers["Location"] == "/admin/"


async def test_a_page_asked_for_without_a_session_leads_to_the_login_form_and_back(gateway, people):
    answer = await gateway.get("/admin/users?role=client", allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/admin/login?next=%2Fadmin%2Fusers%3Frole%3Dclient"
    logged = await log_in(gateway, "root@example.com", next="/admin/users?role=client")
    assert logged.headers["Location"] == "/admin/users?role=client"


async def test_a_session_ends_after_its_idle_time_and_its_lifetime(gateway_factory, database, clock):
    gateway = await gateway_factory(admin_session_idle_s=600, admin_session_ttl_s=1800)
    await person(database, "root@example.com", role="admin")
    await logged_in(gateway, "root@example.com")
    for _ in range(3):  # a page every 9 minutes keeps it alive ...
        clock.advance(540)
        assert (await gateway.get("/admin/users", allow_redirects=False)).status == 200
    clock.advance(540)  # ... until its lifetime (30 minutes) is over
    assert (await gateway.get("/admin/users", allow_redirects=False)).status == 303
    await logged_in(gateway, "root@example.com")
    clock.advance(601)  # idle past 10 minutes
    assert (await gateway.get("/admin/users", allow_redirects=False)).status == 303
