"""Email addresses: look-alike characters refused, accents stored composed (ATTACK-2026-12-01 L2)."""

from __future__ import annotations

import pytest

from tests.support.accounts import register
from tests.support.api import REGISTER, error_of, row_counts

# -- L2: email addresses -------------------------------------------------------------------------

@pytest.mark.parametrize("email", [
    "admin@tollgate.local\u200b",       # zero-width space
    "ad\u200dmin@tollgate.local",       # zero-width joiner
    "admin\u2060@tollgate.local",       # word joiner
    "\ufeffadmin@tollgate.local",       # byte-order mark
    "ad\u00admin@tollgate.local",       # soft hyphen
    "admin@tollgate\u202e.local",       # right-to-left override
    "admin@tollgate.local\u00a0x",      # no-break space
    "ａdmin@tollgate.local",            # full-width a: a compatibility form of "a"
    "admin@tollgate.ｌocal",
    "admin@\u0301tollgate.local",       # a combining accent on nothing
    "ad\ue000min@tollgate.local",       # private use
])
async def test_lookalike_emails_with_invisible_or_compatibility_characters_are_refused(gateway, database, email):
    before = await row_counts(database)
    response = await gateway.post("/api/v1/auth/register", json={**REGISTER, "email": email})
    assert await error_of(response, 400) == "invalid_email"
    assert await row_counts(database) == before


async def test_an_accented_email_is_stored_composed_and_logs_in_either_way(gateway, database):
    decomposed = "jose\u0301@example.com"
    response = await gateway.post("/api/v1/auth/register", json={**REGISTER, "email": decomposed})
    assert response.status == 201, await response.text()
    assert (await response.json())["email"] == "jos\u00e9@example.com"
    for typed in (decomposed, "jos\u00e9@example.com"):
        login = await gateway.post("/api/v1/auth/login", json={"email": typed, "password": REGISTER["password"]})
        assert login.status == 200, typed
    again = await gateway.post("/api/v1/auth/register",
                               json={**REGISTER, "username": "other", "email": "jos\u00e9@example.com"})
    assert await error_of(again, 409) == "email_taken"


async def test_a_magic_link_for_a_lookalike_email_is_refused(gateway, database, outbox):
    await register(gateway, "ann@example.com")
    response = await gateway.post("/api/v1/auth/magic-link", json={"email": "ann@example.com\u200b"})
    assert await error_of(response, 400) == "invalid_email"
    assert outbox.sent == []
