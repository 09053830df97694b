"""Hostile input on the JSON API is a 4xx in the documented shape and writes nothing
(ATTACK-2026-12-01 M6: NUL and control characters, non-UTF-8 bearers, query strings; L2: invisible
characters in email addresses; decision 0014)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.accounts import users
from tests.conftest import deposit, register

TABLES = ("users", "accounts", "api_keys", "bundles", "access_tokens", "transfers", "audit_log",
          "magic_links", "refresh_tokens")
ADMIN_PASSWORD = "admin password 1"


async def row_counts(database) -> dict[str, int]:
    return {table: await database.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}


async def error_of(response, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    return body["error"]["code"]


@pytest.fixture
async def people(gateway, database):
    """An admin and a client (with credits), both logged in."""
    await users.ensure_admin(database, email="root@example.com", password=ADMIN_PASSWORD)
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": ADMIN_PASSWORD})
    admin = {"Authorization": "Bearer " + (await login.json())["access_token"]}
    client = await register(gateway, "client@example.com")
    await deposit(database, client["id"], 10)
    return {"admin": admin, "client": client["headers"], "client_id": client["id"], None: {}}


REGISTER = {"email": "new@example.com", "username": "newbie", "password": "long enough pw", "full_name": "New Bie"}
BUNDLE = {"name": "Pack", "description": "x", "token_count": 2, "duration_hours": 24, "price": "30"}
NUL, BELL, ESCAPE = "\u0000", "\u0007", "\u001b"

# (who, method, path, body): every string a handler stores as text, with a control character in it.
HOSTILE_BODIES = [
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "email": f"a{NUL}b@example.com"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "username": f"nul{NUL}01"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "full_name": f"Nul{NUL}Name"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "full_name": f"Bell{BELL}Name"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "password": f"long enough{NUL}pw"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "referral_code": f"ABC{NUL}"}),
    (None, "POST", "/api/v1/auth/login", {"email": f"a{NUL}@example.com", "password": "x"}),
    (None, "POST", "/api/v1/auth/login", {"email": "client@example.com", "password": f"x{NUL}"}),
    (None, "POST", "/api/v1/auth/magic-link", {"email": f"client{NUL}@example.com"}),
    (None, "POST", "/api/v1/auth/refresh", {"refresh_token": f"a{NUL}b"}),
    (None, "POST", "/api/v1/auth/magic-link/verify", {"token": f"a{NUL}b"}),
    ("client", "POST", "/api/v1/keys", {"name": f"key{NUL}"}),
    ("client", "POST", "/api/v1/keys", {"name": f"key{ESCAPE}[31m"}),
    ("client", "POST", "/api/v1/keys", {"allowed_models": [f"gpt-4o{NUL}"]}),
    ("client", "POST", "/api/v1/keys", {"ip_allowlist": [f"127.0.0.1{NUL}"]}),
    ("client", "POST", "/api/v1/tokens/purchase", {"duration_hours": 1, "scope": f"full{NUL}"}),
    ("admin", "POST", "/api/v1/admin/users/{client_id}/adjust", {"credits": "5", "reason": f"gift{NUL}"}),
    ("admin", "POST", "/api/v1/admin/users/{client_id}/adjust", {"credits": f"5{NUL}", "reason": "gift"}),
    ("admin", "POST", "/api/v1/admin/bundles", {**BUNDLE, "name": f"Pack{NUL}"}),
    ("admin", "POST", "/api/v1/admin/bundles", {**BUNDLE, "description": f"about{NUL}"}),
    ("admin", "PATCH", "/api/v1/admin/bundles/1", {"name": f"Renamed{NUL}"}),
    ("admin", "POST", "/api/v1/admin/tokens", {"email": f"client{NUL}@example.com", "hours": 1}),
    ("admin", "PUT", "/api/v1/admin/prices/gpt-4o", {"input_per_mtok": "1", "output_per_mtok": "2",
                                                     "cached_input_per_mtok": "1", "provider": f"openai{NUL}"}),
]


@pytest.mark.parametrize("who, method, path, body", HOSTILE_BODIES)
async def test_control_characters_in_json_strings_are_400_and_write_nothing(gateway, database, people,
                                                                            who, method, path, body):
    before = await row_counts(database)
    response = await gateway.request(method, path.format(client_id=people["client_id"]),
                                     headers=people[who], data=orjson.dumps(body))
    assert await error_of(response, 400) in ("invalid_field", "invalid_provider")
    assert await row_counts(database) == before


async def test_tabs_and_line_breaks_stay_allowed_where_text_may_have_them(gateway, database, people):
    response = await gateway.post(f"/api/v1/admin/users/{people['client_id']}/adjust", headers=people["admin"],
                                  json={"credits": "5", "reason": "refund for\n\tticket 17"})
    assert response.status == 201, await response.text()


async def test_a_deeply_nested_list_is_refused_as_a_field_not_a_crash(gateway, database, people):
    nested = b"[" * 900 + b'"gpt-4o"' + b"]" * 900  # within orjson's 1024 levels, past Python's recursion
    response = await gateway.post("/api/v1/keys", headers=people["client"],
                                  data=b'{"allowed_models": ' + nested + b"}")
    assert await error_of(response, 400) == "invalid_field"


async def raw_request(gateway, head: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP client library would (a non-UTF-8 header value); the status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("method, path", [("GET", "/api/v1/auth/me"), ("GET", "/api/v1/currency/balance"),
                                          ("GET", "/api/v1/admin/users"), ("POST", "/api/v1/auth/logout")])
@pytest.mark.parametrize("credential", [b"\xff\xfe", b"eyJ\xc3\xa9.x.y", b"\xed\xa0\x80"])
async def test_a_non_utf8_bearer_is_401_invalid_jwt(gateway, database, method, path, credential):
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
            "Authorization: Bearer ").encode() + credential + b"\r\n\r\n"
    status, body = await raw_request(gateway, head)
    assert (status, body["error"]["code"]) == (401, "invalid_jwt")


@pytest.mark.parametrize("who, path", [
    ("admin", "/api/v1/admin/users?search=%00"),
    ("admin", "/api/v1/admin/users?role=client%00"),
    ("admin", "/api/v1/admin/users?plan=%00"),
    ("admin", "/api/v1/admin/users?is_active=true%00"),
    ("admin", "/api/v1/admin/users?manager_id=1%00"),
    ("admin", "/api/v1/admin/users?skip=%00"),
    ("admin", "/api/v1/admin/users/1/tokens?active_only=%00"),
    ("admin", "/api/v1/admin/stats?period=%00"),
    ("admin", "/api/v1/admin/audit?action=%00"),
    ("admin", "/api/v1/admin/audit?target_type=x%00y"),
    ("admin", "/api/v1/admin/audit?target_id=%00"),
    ("client", "/api/v1/currency/transactions?type=%00"),
    ("client", "/api/v1/currency/transactions?limit=1%00"),
    ("client", "/api/v1/tokens/my-tokens?active_only=%00"),
])
async def test_nul_in_list_filters_is_400_invalid_query(gateway, database, people, who, path):
    response = await gateway.get(path, headers=people[who])
    assert await error_of(response, 400) == "invalid_query"


@pytest.mark.parametrize("path", ["/api/v1/tokens/1%00", "/api/v1/admin/users/1%00", "/api/v1/bundles/1%00"])
async def test_nul_in_path_ids_is_404(gateway, database, people, path):
    method = "DELETE" if path.startswith("/api/v1/tokens") else "GET"
    who = "admin" if "admin" in path else "client"
    response = await gateway.request(method, path, headers=people[who])
    assert response.status == 404


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


@pytest.mark.parametrize("body", [b"token=\x80\xad", b"token=%ff%fe", b"\xff=\xfe", b"token=a&" * 40])
async def test_a_magic_link_form_that_is_not_ascii_or_too_long_is_a_400(gateway, database, body):
    """Found by the fuzz (tests/test_fuzz.py): request.post() decoded the form as UTF-8 and crashed."""
    response = await gateway.post("/api/v1/auth/magic-link/verify", data=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_form"
