"""What every page and action shares: a POST without the session's CSRF token changes nothing; a
manager reaches only their own clients (404 for anyone else's, on every page, export and POST);
pages need a session and carry the security headers; errors are HTML pages."""

from __future__ import annotations

import pytest

from tests.support.admin_ui import credentials, state
from tests.support.accounts import deposit


def actions(user: int, token: int, key: int, bundle: int = 1) -> list[tuple[str, dict[str, str]]]:
    """Every POST of the admin UI, aimed at `user` and their credentials, with a valid body."""
    return [
        (f"/admin/users/{user}/adjust", {"credits": "5", "reason": "goodwill", "idempotency_key": "k" * 20}),
        (f"/admin/users/{user}/update", {"is_active": "false"}),
        (f"/admin/users/{user}/update", {"plan": "premium"}),
        (f"/admin/users/{user}/update", {"role": "manager"}),
        (f"/admin/users/{user}/update", {"manager_id": ""}),
        (f"/admin/users/{user}/erase", {"confirm": "bob@example.com"}),
        (f"/admin/tokens/{token}/revoke", {}),
        (f"/admin/tokens/{token}/release", {}),
        (f"/admin/keys/{key}/revoke", {}),
        ("/admin/settings/prices", {"model": "gpt-4o", "input_per_mtok": "1", "output_per_mtok": "1",
                                    "cached_input_per_mtok": "1"}),
        ("/admin/settings/bundles", {"name": "x", "token_count": "1", "duration_hours": "1", "price": "1"}),
        (f"/admin/settings/bundles/{bundle}", {"name": "x", "token_count": "1", "duration_hours": "1", "price": "1"}),
        (f"/admin/settings/bundles/{bundle}/delete", {}),
    ]


@pytest.mark.parametrize("token_kind", ["missing", "wrong"])
async def test_a_form_posted_without_the_sessions_csrf_token_changes_nothing(as_admin, database, people, token_kind):
    await deposit(database, people.other_client, 10)
    token, key = await credentials(database, people.other_client)
    before = await state(database)
    for path, body in actions(people.other_client, token, key):
        if token_kind == "wrong":
            body = {**body, "csrf_token": "x" * 43}
        answer = await as_admin.post(path, data=body, allow_redirects=False)
        assert answer.status == 403, (path, await answer.text())
        assert "csrf" in (await answer.text()).lower()
        assert await state(database) == before, path


async def test_the_same_forms_with_the_token_do_change_things(as_admin, database, people):
    token, key = await credentials(database, people.other_client)
    before = await state(database)
    for path, body in actions(people.other_client, token, key)[:2]:
        answer = await as_admin.post(path, data={**body, "csrf_token": as_admin.csrf}, allow_redirects=False)
        assert answer.status == 303, (path, await answer.text())
    assert await state(database) != before


def pages_of(user: int) -> list[str]:
    return [f"/admin/users/{user}", f"/admin/ledger?user={user}", f"/admin/ledger.csv?user={user}",
            f"/admin/ai-usage?user={user}", f"/admin/sessions?user={user}", f"/admin/payments?user={user}"]


async def test_a_manager_gets_404_for_every_page_export_and_post_about_another_managers_client(
        as_manager, database, people):
    await deposit(database, people.other_client, 10)
    token, key = await credentials(database, people.other_client)
    before = await state(database)
    for path in pages_of(people.other_client) + ["/admin/audit", "/admin/settings"]:
        answer = await as_manager.get(path)
        assert answer.status == 404, (path, await answer.text())
        assert "text/html" in answer.headers["Content-Type"]
    for path, body in actions(people.other_client, token, key):
        answer = await as_manager.post(path, data={**body, "csrf_token": as_manager.csrf}, allow_redirects=False)
        assert answer.status == 404, (path, await answer.text())
    assert await state(database) == before


async def test_a_manager_reaches_their_own_clients_pages_and_the_actions_managers_may_take(
        as_manager, database, people):
    token, key = await credentials(database, people.client)
    for path in pages_of(people.client):
        assert (await as_manager.get(path)).status == 200, path
    for path, body in ((f"/admin/users/{people.client}/update", {"plan": "premium"}),
                       (f"/admin/tokens/{token}/release", {}), (f"/admin/tokens/{token}/revoke", {}),
                       (f"/admin/keys/{key}/revoke", {}),
                       (f"/admin/users/{people.client}/update", {"is_active": "false"})):
        answer = await as_manager.post(path, data={**body, "csrf_token": as_manager.csrf}, allow_redirects=False)
        assert answer.status == 303, (path, await answer.text())
    row = await database.fetchrow("SELECT plan, is_active FROM users WHERE id = $1", people.client)
    assert (row["plan"], row["is_active"]) == ("premium", False)


async def test_a_manager_cannot_give_their_client_the_enterprise_plan_or_another_role(as_manager, database, people):
    for body in ({"plan": "enterprise"}, {"role": "manager"}):
        answer = await as_manager.post(f"/admin/users/{people.client}/update",
                                       data={**body, "csrf_token": as_manager.csrf}, allow_redirects=False)
        assert answer.status == 403, await answer.text()
    row = await database.fetchrow("SELECT plan, role FROM users WHERE id = $1", people.client)
    assert (row["plan"], row["role"]) == ("free", "client")


async def test_a_managers_lists_and_export_hold_only_their_clients(as_manager, database, people):
    await deposit(database, people.client, 7)
    await deposit(database, people.other_client, 9)
    users = await (await as_manager.get("/admin/users")).text()
    assert "alice@example.com" in users and "bob@example.com" not in users and "root@example.com" not in users
    ledger_page = await (await as_manager.get("/admin/ledger")).text()
    assert "alice@example.com" in ledger_page and "bob@example.com" not in ledger_page
    export = await (await as_manager.get("/admin/ledger.csv")).text()
    assert export.count("\n") == 2 and "alice@example.com" in export


async def test_pages_carry_headers_that_forbid_scripts_framing_and_caching(as_admin):
    answer = await as_admin.get("/admin/users")
    assert "script-src" not in answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"


async def test_an_unknown_admin_path_or_bad_query_is_an_html_error_page(as_admin):
    missing = await as_admin.get("/admin/nothing-here")
    assert missing.status == 404 and "text/html" in missing.headers["Content-Type"]
    bad = await as_admin.get("/admin/users?role=emperor")
    assert bad.status == 400 and "<h1>400" in await bad.text()


async def test_text_from_users_is_escaped_on_every_page(as_admin, database, people):
    await database.execute("UPDATE users SET full_name = '<script>alert(1)</script>' WHERE id = $1", people.client)
    for path in ("/admin/users", f"/admin/users/{people.client}"):
        text = await (await as_admin.get(path)).text()
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


async def test_every_action_lands_in_the_audit_log_with_actor_target_and_address(as_admin, database, people):
    await deposit(database, people.other_client, 10)
    token, key = await credentials(database, people.other_client)
    done = []
    for path, body in actions(people.other_client, token, key):
        if path.endswith("/erase"):
            continue  # last: it ends the other actions' target
        before = await database.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
        answer = await as_admin.post(path, data={**body, "csrf_token": as_admin.csrf}, allow_redirects=False)
        assert answer.status == 303, (path, await answer.text())
        entries = await database.fetch("SELECT actor_id, target_type, target_id, ip FROM audit_log WHERE id > $1",
                                       before)
        assert entries, path
        assert all(e["actor_id"] == people.admin and e["ip"] == "127.0.0.1" and e["target_type"]
                   and e["target_id"] for e in entries), (path, entries)
        done.append(path)
    assert len(done) == len(actions(1, 1, 1)) - 1
