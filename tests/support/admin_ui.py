"""The admin UI under test: staff and clients made straight in PostgreSQL, logging in through the
form, and reading a page's CSRF token to post its forms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.accounts import users

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HASHES: list[str] = []


def password_hash() -> str:
    """Computed once per run (argon2 is slow on purpose)."""
    if not _HASHES:
        _HASHES.append(users.hash_password(PASSWORD))
    return _HASHES[0]


async def person(database, email: str, *, role: str = "client", manager_id: int | None = None,
                 can_log_in: bool = True, **fields) -> int:
    user_id = await users.create(database, email=email, password=None, role=role, **fields)
    await database.execute("UPDATE users SET password_hash = $2, manager_id = $3 WHERE id = $1", user_id,
                           password_hash() if can_log_in else None, manager_id)
    return user_id


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


async def log_in(client, email: str, password: str = PASSWORD, **extra):
    """GET the form (its CSRF cookie and field), then POST it; the POST's answer (not followed)."""
    page = await client.get("/admin/login")
    assert page.status == 200, await page.text()
    return await client.post("/admin/login", data={"csrf_token": csrf_of(await page.text()), "email": email,
                                                   "password": password, **extra}, allow_redirects=False)


async def logged_in(client, email: str) -> str:
    """Log in; the CSRF token of the session (from the dashboard)."""
    answer = await log_in(client, email)
    assert answer.status == 303, await answer.text()
    dashboard = await client.get("/admin/")
    assert dashboard.status == 200, await dashboard.text()
    return csrf_of(await dashboard.text())


@dataclass
class Staff:
    admin: int
    manager: int
    other_manager: int
    client: int        # the manager's
    other_client: int  # the other manager's


async def staff(database) -> Staff:
    admin = await person(database, "root@example.com", role="admin", full_name="Ada Admin")
    manager = await person(database, "m1@example.com", role="manager", full_name="Mona Manager")
    other_manager = await person(database, "m2@example.com", role="manager")
    client = await person(database, "alice@example.com", manager_id=manager, username="alice",
                          full_name="Alice Example")
    other_client = await person(database, "bob@example.com", manager_id=other_manager, username="bob",
                                full_name="Bob Other")
    return Staff(admin, manager, other_manager, client, other_client)


async def credentials(database, user_id: int) -> tuple[int, int]:
    """An access token and an API key of the user (ids), made straight in PostgreSQL."""
    import datetime as dt

    from gateway.accounts import access_tokens, api_keys

    now = dt.datetime.now(dt.timezone.utc)
    token = await access_tokens.issue(database, user_id=user_id, hours=24, scope="full", now=now)
    key = await api_keys.create(database, user_id=user_id, name="laptop", allowed_models=[], ip_allowlist=[],
                                rpm_limit=0, tpm_limit=0, now=now, expires_at=None)
    return token.id, key.id


STATE_QUERIES = (
    "SELECT id, email, role, plan, is_active, manager_id, erased_at FROM users ORDER BY id",
    "SELECT id, revoked_at FROM access_tokens ORDER BY id",
    "SELECT id, revoked_at, name FROM api_keys ORDER BY id",
    "SELECT id, debits_posted, credits_posted FROM accounts ORDER BY id",
    "SELECT count(*) FROM transfers",
    "SELECT model, input_per_mtok_micro FROM model_prices ORDER BY model",
    "SELECT id, name, is_active, deleted_at FROM bundles ORDER BY id",
    "SELECT token_id, device_id FROM device_bindings ORDER BY token_id",
    "SELECT id, ended_at FROM proxy_sessions ORDER BY id",
    "SELECT count(*) FROM audit_log WHERE action NOT LIKE 'admin_ui.%'",
)


async def state(database) -> list:
    """Everything an action of the admin UI could change."""
    return [[tuple(row) for row in await database.fetch(query)] for query in STATE_QUERIES]
