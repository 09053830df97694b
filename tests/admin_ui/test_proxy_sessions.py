"""Proxy sessions: open ones by default, all on request, one user's; a manager sees their clients'."""

from __future__ import annotations

from gateway.proxy.resources import SESSIONS
from tests.support.accounts import make_token, proxy_headers


async def test_open_sessions_are_listed_with_device_address_and_counts(as_admin, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await as_admin.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token, "desk-9"))).status == 200
    await as_admin.app[SESSIONS].flush()
    page = await (await as_admin.get("/admin/sessions")).text()
    assert "desk-9" in page and "alice@example.com" in page
    await database.execute("UPDATE proxy_sessions SET ended_at = now()")
    assert "desk-9" not in await (await as_admin.get("/admin/sessions")).text()
    assert "desk-9" in await (await as_admin.get(f"/admin/sessions?open=false&user={people.client}")).text()


async def test_a_manager_sees_only_their_clients_sessions(as_manager, database, people):
    mine = await make_token(database, email="alice@example.com")
    theirs = await make_token(database, email="bob@example.com")
    for token, device in ((mine.token, "mine-1"), (theirs.token, "theirs-1")):
        assert (await as_manager.get("/api/v1/proxy/echo/x", headers=proxy_headers(token, device))).status == 200
    await as_manager.app[SESSIONS].flush()
    page = await (await as_manager.get("/admin/sessions")).text()
    assert "mine-1" in page and "theirs-1" not in page
