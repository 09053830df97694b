"""The audit log page (admins): newest first, filters, keyset pages, details shown escaped."""

from __future__ import annotations

import re

from admin_ui import audit_page


async def test_entries_are_filtered_and_paged_newest_first(as_admin, database, people, monkeypatch):
    monkeypatch.setattr(audit_page, "PAGE_SIZE", 2)
    for number in range(3):
        await database.execute("INSERT INTO audit_log (actor_id, action, target_type, target_id, ip, details) "
                               "VALUES ($1, 'test.thing', 'user', $2, '10.0.0.1', $3::jsonb)",
                               people.admin, str(people.client), f'{{"n": {number}, "x": "<b>"}}')
    page = await (await as_admin.get("/admin/audit?action=test.thing")).text()
    assert re.findall(r'"n": (\d)', page) == ["2", "1"] and "<b>" not in page
    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+[^"]*)" rel="next"', page).group(1).replace("&amp;", "&")
    assert re.findall(r'"n": (\d)', await (await as_admin.get(older)).text()) == ["0"]
    assert "test.thing" not in await (await as_admin.get("/admin/audit?action=other")).text()
