"""The users change list: search by email, name or id; filters by role, plan and state; keyset pages."""

from __future__ import annotations

import re

from admin_ui import users as user_pages
from tests.support.admin_ui import person


def emails(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/users/\d+">([^<]+)</a>', html)


async def test_search_finds_users_by_email_name_or_id(as_admin, people):
    assert emails(await (await as_admin.get("/admin/users?search=ALICE@")).text()) == ["alice@example.com"]
    assert emails(await (await as_admin.get("/admin/users?search=Bob+Oth")).text()) == ["bob@example.com"]
    assert "alice@example.com" in emails(await (await as_admin.get(f"/admin/users?search={people.client}")).text())


async def test_filters_by_role_plan_and_state(as_admin, database, people):
    await database.execute("UPDATE users SET plan = 'premium', is_active = false WHERE id = $1", people.other_client)
    managers = emails(await (await as_admin.get("/admin/users?role=manager")).text())
    assert managers == ["m1@example.com", "m2@example.com"]
    assert emails(await (await as_admin.get("/admin/users?plan=premium")).text()) == ["bob@example.com"]
    assert emails(await (await as_admin.get("/admin/users?is_active=false")).text()) == ["bob@example.com"]


async def test_pages_follow_one_another_by_id_without_gaps_or_repeats(as_admin, database, people, monkeypatch):
    monkeypatch.setattr(user_pages, "PAGE_SIZE", 3)
    for number in range(5):
        await person(database, f"extra{number}@example.com", can_log_in=False)
    seen, path = [], "/admin/users?role=client"
    while path:
        html = await (await as_admin.get(path)).text()
        seen += emails(html)
        found = re.search(r'href="(/admin/users\?[^"]*after=\d+[^"]*)" rel="next"', html)
        path = found.group(1).replace("&amp;", "&") if found else None
    assert seen == ["alice@example.com", "bob@example.com"] + [f"extra{n}@example.com" for n in range(5)]
