"""Admin users API over HTTP: search, patch, tokens, force revoke, stats and audit; managers scoped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
import pytest

import ledger
from gateway.accounts import access_tokens, users
from gateway.core import metrics
from tests.support.accounts import make_token, proxy_headers

PASSWORD = "correct horse battery"
ECHO = "/api/v1/proxy/echo/x"
BAD_IDS = ("999999", "99999999999999999999", "-1", "0", "abc", "1.5", "%20")
USER_FIELDS = {"id", "email", "username", "full_name", "role", "plan", "is_active", "manager_id",
               "referral_code", "created_at", "balance"}


@dataclass
class People:
    admin: int
    manager: int       # logged in as `as_manager`; manages `client`
    other_manager: int  # manages `other_client`
    client: int
    other_client: int
    loner: int          # a client with no manager
    as_admin: dict[str, str]
    as_manager: dict[str, str]


async def create(database, email: str, *, role: str = "client", can_log_in: bool = False, **fields) -> int:
    """A user; the password hash is computed once per module (argon2 is slow on purpose)."""
    user_id = await users.create(database, email=email, password=None, role=role, **fields)
    if can_log_in:
        await database.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash())
    return user_id


_HASHES: list[str] = []


def password_hash() -> str:
    if not _HASHES:
        _HASHES.append(users.hash_password(PASSWORD))
    return _HASHES[0]


async def login(gateway, email: str) -> dict[str, str]:
    response = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return {"Authorization": "Bearer " + (await response.json())["access_token"]}


async def assign(database, client_id: int, manager_id: int | None) -> None:
    await database.execute("UPDATE users SET manager_id = $2 WHERE id = $1", client_id, manager_id)


@pytest.fixture
async def people(gateway, database) -> People:
    admin = await create(database, "root@example.com", role="admin", can_log_in=True)
    manager = await create(database, "m1@example.com", role="manager", can_log_in=True,
                           full_name="Mona Manager")
    other_manager = await create(database, "m2@example.com", role="manager")
    client = await create(database, "alice@example.com", can_log_in=True, username="alice",
                          full_name="Alice Example")
    other_client = await create(database, "bob@example.com", username="bob_smith", full_name="Bob Smith",
                                plan="premium")
    loner = await create(database, "carol@example.com", full_name="Carol 100% Real")
    await assign(database, client, manager)
    await assign(database, other_client, other_manager)
    return People(admin, manager, other_manager, client, other_client, loner,
                  await login(gateway, "root@example.com"), await login(gateway, "m1@example.com"))


async def error_code(response, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    return body["error"]["code"]


async def user_row(database, user_id: int) -> dict:
    row = await database.fetchrow("SELECT role, plan, is_active, manager_id FROM users WHERE id = $1", user_id)
    return dict(row)


async def audit_count(database) -> int:
    return await database.fetchval("SELECT count(*) FROM audit_log")


async def deposit(database, user_id: int, credits: int, *, key: str, when: dt.datetime | None = None):
    await move(database, "deposit", "payment_clearing", user_id, credits, key=key, when=when)


async def move(database, kind: str, debit: int | str, credit: int | str, credits: int, *, key: str,
               when: dt.datetime | None = None, hold_until: dt.datetime | None = None):
    """A ledger move between a user (given by id) and a system account (given by code)."""
    async with database.acquire() as connection:
        accounts, user_id = [], None
        for side in (debit, credit):
            if isinstance(side, int):
                user_id = side
                accounts.append(await ledger.user_account(connection, side))
            else:
                accounts.append(await ledger.system_id(connection, side))
        return await ledger.move(connection, key=key, debit=accounts[0], credit=accounts[1],
                                 amount_micro=credits * ledger.MICRO_PER_CREDIT, kind=kind,
                                 now=when or dt.datetime.now(dt.timezone.utc), user_id=user_id,
                                 hold_until=hold_until)


ENDPOINTS = (("GET", "/api/v1/admin/users"), ("GET", "/api/v1/admin/users/1"),
             ("PATCH", "/api/v1/admin/users/1"), ("GET", "/api/v1/admin/users/1/tokens"),
             ("POST", "/api/v1/admin/tokens/1/revoke"), ("GET", "/api/v1/admin/stats"),
             ("GET", "/api/v1/admin/audit"))


# -- who may call ------------------------------------------------------------------------------

async def test_every_endpoint_refuses_a_request_without_a_jwt(gateway, database):
    for method, path in ENDPOINTS:
        response = await gateway.request(method, path, json={"plan": "free"})
        assert await error_code(response, 401) == "missing_jwt", path


async def test_every_endpoint_refuses_a_garbage_jwt(gateway, database):
    for method, path in ENDPOINTS:
        response = await gateway.request(method, path, json={"plan": "free"},
                                         headers={"Authorization": "Bearer not.a.jwt"})
        assert response.status == 401, path


async def test_every_endpoint_refuses_a_client_with_403(gateway, database, people):
    as_client = await login(gateway, "alice@example.com")
    for method, path in ENDPOINTS:
        response = await gateway.request(method, path, json={"plan": "premium"}, headers=as_client)
        assert await error_code(response, 403) == "role_required", path
    assert (await user_row(database, people.client))["plan"] == "free"


async def test_a_manager_cannot_read_the_audit_log(gateway, database, people):
    response = await gateway.get("/api/v1/admin/audit", headers=people.as_manager)
    assert await error_code(response, 403) == "role_required"


async def test_a_deactivated_managers_jwt_stops_working_at_once(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.manager}", headers=people.as_admin,
                                   json={"is_active": False})
    assert response.status == 200
    response = await gateway.get("/api/v1/admin/users", headers=people.as_manager)
    assert response.status == 401


# -- listing -----------------------------------------------------------------------------------

async def test_an_admin_lists_every_user_with_their_balance(gateway, database, people):
    await deposit(database, people.client, 12, key="d1")
    response = await gateway.get("/api/v1/admin/users", headers=people.as_admin)
    assert response.status == 200
    body = await response.json()
    assert (body["total"], body["skip"], body["limit"]) == (6, 0, 50)
    items = {item["id"]: item for item in body["items"]}
    assert set(items) == {people.admin, people.manager, people.other_manager, people.client,
                          people.other_client, people.loner}
    alice = items[people.client]
    assert set(alice) == USER_FIELDS
    assert (alice["email"], alice["username"], alice["full_name"], alice["role"], alice["plan"],
            alice["is_active"], alice["manager_id"]) == (
        "alice@example.com", "alice", "Alice Example", "client", "free", True, people.manager)
    assert alice["balance"] == "12" == ledger.format_micro(
        (await ledger.balance(database, people.client)).available_micro)
    assert items[people.loner]["balance"] == "0"
    dt.datetime.fromisoformat(alice["created_at"])


async def test_balances_are_available_credit_net_of_holds(gateway, database, people):
    await deposit(database, people.client, 10, key="d1")
    hold_until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    await move(database, "usage", people.client, "revenue", 3, key="h1", hold_until=hold_until)
    body = await (await gateway.get(f"/api/v1/admin/users/{people.client}", headers=people.as_admin)).json()
    assert body["balance"] == "7"


async def test_listing_costs_the_same_queries_for_one_user_or_fifty(gateway, database, people):
    async def queries_for(limit: int) -> int:
        before = metrics.DATABASE_QUERIES._value.get()
        response = await gateway.get(f"/api/v1/admin/users?limit={limit}", headers=people.as_admin)
        assert len((await response.json())["items"]) == min(limit, 6)
        return metrics.DATABASE_QUERIES._value.get() - before

    assert await queries_for(1) == await queries_for(50)


async def test_search_matches_email_username_and_full_name_ignoring_case(gateway, database, people):
    for search, expected in (("ALICE@", {people.client}), ("Bob_S", {people.other_client}),
                             ("e exa", {people.client}), ("mona", {people.manager}),
                             ("EXAMPLE.COM", {people.admin, people.manager, people.other_manager,
                                              people.client, people.other_client, people.loner}),
                             ("nobody", set())):
        body = await (await gateway.get("/api/v1/admin/users", params={"search": search},
                                        headers=people.as_admin)).json()
        assert {item["id"] for item in body["items"]} == expected, search
        assert body["total"] == len(expected)


async def test_search_takes_like_wildcards_literally(gateway, database, people):
    for search, expected in (("%", {people.loner}), ("_", {people.other_client}),
                             ("100%", {people.loner}), ("\\", set())):
        body = await (await gateway.get("/api/v1/admin/users", params={"search": search},
                                        headers=people.as_admin)).json()
        assert {item["id"] for item in body["items"]} == expected, search


async def test_filters_narrow_by_role_plan_activity_and_manager(gateway, database, people):
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", people.loner)
    everyone = {people.admin, people.manager, people.other_manager, people.client, people.other_client,
                people.loner}
    for params, expected in (({"role": "manager"}, {people.manager, people.other_manager}),
                             ({"role": "admin"}, {people.admin}),
                             ({"plan": "premium"}, {people.other_client}),
                             ({"is_active": "false"}, {people.loner}),
                             ({"manager_id": str(people.manager)}, {people.client}),
                             ({"role": "client", "is_active": "true"}, {people.client, people.other_client}),
                             ({"role": "", "search": ""}, everyone)):
        body = await (await gateway.get("/api/v1/admin/users", params=params,
                                        headers=people.as_admin)).json()
        assert {item["id"] for item in body["items"]} == expected, params
        assert body["total"] == len(expected), params


async def test_skip_and_limit_page_through_the_users_in_id_order(gateway, database, people):
    seen = []
    for skip in (0, 2, 4, 6):
        body = await (await gateway.get(f"/api/v1/admin/users?skip={skip}&limit=2",
                                        headers=people.as_admin)).json()
        assert body["total"] == 6 and (body["skip"], body["limit"]) == (skip, 2)
        seen += [item["id"] for item in body["items"]]
    assert seen == sorted([people.admin, people.manager, people.other_manager, people.client,
                           people.other_client, people.loner])


BAD_LIST_QUERIES = (
    "skip=abc", "skip=-1", "skip=1.5", "skip=99999999999999999999", "limit=0", "limit=201",
    "limit=1000", "limit=-5", "limit=ten", "role=root", "role=ADMIN", "plan=gold", "is_active=yes",
    "is_active=1", "manager_id=abc", "manager_id=0", "manager_id=-3",
    "manager_id=99999999999999999999", "search=" + "x" * 201, "search=a%00b",
)


async def test_bad_list_queries_are_400_invalid_query(gateway, database, people):
    for query in BAD_LIST_QUERIES:
        response = await gateway.get(f"/api/v1/admin/users?{query}", headers=people.as_admin)
        assert await error_code(response, 400) == "invalid_query", query


async def test_a_manager_lists_only_their_own_clients(gateway, database, people):
    body = await (await gateway.get("/api/v1/admin/users", headers=people.as_manager)).json()
    assert [item["id"] for item in body["items"]] == [people.client] and body["total"] == 1
    body = await (await gateway.get(f"/api/v1/admin/users?manager_id={people.other_manager}",
                                    headers=people.as_manager)).json()
    assert body == {"items": [], "total": 0, "skip": 0, "limit": 50}


async def test_a_manager_loses_sight_of_a_client_promoted_out_of_the_client_role(gateway, database, people):
    await database.execute("UPDATE users SET role = 'admin' WHERE id = $1", people.client)
    response = await gateway.get(f"/api/v1/admin/users/{people.client}", headers=people.as_manager)
    assert await error_code(response, 404) == "user_not_found"


# -- one user ----------------------------------------------------------------------------------

async def test_one_user_is_the_same_item_as_in_the_list(gateway, database, people):
    listed = await (await gateway.get("/api/v1/admin/users?search=alice", headers=people.as_admin)).json()
    response = await gateway.get(f"/api/v1/admin/users/{people.client}", headers=people.as_admin)
    assert response.status == 200
    assert await response.json() == listed["items"][0]


async def test_unknown_and_malformed_user_ids_are_404(gateway, database, people):
    for user_id in BAD_IDS:
        for suffix in ("", "/tokens"):
            response = await gateway.get(f"/api/v1/admin/users/{user_id}{suffix}", headers=people.as_admin)
            assert await error_code(response, 404) == "user_not_found", (user_id, suffix)


async def test_a_manager_gets_404_for_everyone_but_their_clients(gateway, database, people):
    assert (await gateway.get(f"/api/v1/admin/users/{people.client}", headers=people.as_manager)).status == 200
    for user_id in (people.other_client, people.loner, people.admin, people.manager, people.other_manager):
        for suffix in ("", "/tokens"):
            response = await gateway.get(f"/api/v1/admin/users/{user_id}{suffix}", headers=people.as_manager)
            assert await error_code(response, 404) == "user_not_found", (user_id, suffix)


# -- patching ----------------------------------------------------------------------------------

async def test_an_admin_changes_every_field_in_one_patch(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.loner}", headers=people.as_admin, json={
        "is_active": False, "role": "manager", "plan": "enterprise", "manager_id": people.other_manager})
    assert response.status == 200
    body = await response.json()
    assert set(body) == USER_FIELDS
    expected = {"role": "manager", "plan": "enterprise", "is_active": False, "manager_id": people.other_manager}
    assert {name: body[name] for name in expected} == expected
    assert await user_row(database, people.loner) == expected


async def test_a_patch_writes_one_audit_entry_with_old_and_new_values(gateway, database, people):
    await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                        json={"plan": "premium", "manager_id": None, "is_active": True})
    rows = await database.fetch("SELECT * FROM audit_log")
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor_id"], row["action"], row["target_type"], row["target_id"]) == (
        people.admin, "user.update", "user", str(people.client))
    assert orjson.loads(row["details"]) == {"changes": {
        "plan": {"old": "free", "new": "premium"},
        "manager_id": {"old": people.manager, "new": None}}}


async def test_a_patch_that_changes_nothing_writes_no_audit_entry(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                                   json={"plan": "free", "is_active": True})
    assert response.status == 200
    assert await audit_count(database) == 0


async def test_manager_id_null_unassigns_a_client(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                                   json={"manager_id": None})
    assert (await response.json())["manager_id"] is None
    assert (await user_row(database, people.client))["manager_id"] is None


async def test_an_admin_assigns_a_client_to_a_manager(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.loner}", headers=people.as_admin,
                                   json={"manager_id": people.manager})
    assert response.status == 200
    body = await (await gateway.get("/api/v1/admin/users", headers=people.as_manager)).json()
    assert {item["id"] for item in body["items"]} == {people.client, people.loner}


async def test_a_manager_changes_plan_and_activity_of_their_client(gateway, database, people):
    response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager,
                                   json={"plan": "premium", "is_active": False})
    assert response.status == 200
    assert await user_row(database, people.client) == {
        "role": "client", "plan": "premium", "is_active": False, "manager_id": people.manager}
    assert await database.fetchval("SELECT actor_id FROM audit_log") == people.manager


async def test_a_manager_may_not_change_role_or_manager(gateway, database, people):
    before = await user_row(database, people.client)
    for body in ({"role": "admin"}, {"manager_id": None}, {"manager_id": people.other_manager},
                 {"plan": "premium", "role": "client"}):
        response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager,
                                       json=body)
        assert await error_code(response, 403) == "admin_required", body
    assert await user_row(database, people.client) == before
    assert await audit_count(database) == 0


async def test_a_manager_may_not_give_a_client_the_unlimited_enterprise_plan(gateway, database, people):
    """ATTACK-2026-12-01 L14: enterprise means no rate limit; only an admin grants it (decision 0014)."""
    before = await user_row(database, people.client)
    for body in ({"plan": "enterprise"}, {"plan": "enterprise", "is_active": True}):
        response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager,
                                       json=body)
        assert await error_code(response, 403) == "admin_required", body
    assert await user_row(database, people.client) == before
    assert await audit_count(database) == 0
    for plan in ("premium", "free"):
        response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager,
                                       json={"plan": plan})
        assert response.status == 200, plan
    response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                                   json={"plan": "enterprise"})
    assert response.status == 200 and (await response.json())["plan"] == "enterprise"


async def test_a_manager_patching_anyone_else_gets_404_and_changes_nothing(gateway, database, people):
    for user_id in (people.other_client, people.loner, people.admin, people.manager, 999999):
        before = await user_row(database, user_id) if user_id != 999999 else None
        response = await gateway.patch(f"/api/v1/admin/users/{user_id}", headers=people.as_manager,
                                       json={"is_active": False, "plan": "enterprise"})
        assert await error_code(response, 404) == "user_not_found", user_id
        if before is not None:
            assert await user_row(database, user_id) == before
    assert await audit_count(database) == 0


async def test_a_manager_asking_to_change_the_role_of_anyone_else_gets_404_not_403(gateway, database, people):
    """The scope is looked at before who may change what (decision 0018): a foreign id stays a 404."""
    for body in ({"role": "manager"}, {"manager_id": people.manager}):
        response = await gateway.patch(f"/api/v1/admin/users/{people.other_client}", headers=people.as_manager,
                                       json=body)
        assert await error_code(response, 404) == "user_not_found", body
    assert await audit_count(database) == 0


async def test_bad_patches_are_400_and_change_nothing(gateway, database, people):
    inactive_manager = await create(database, "m3@example.com", role="manager")
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", inactive_manager)
    cases = [
        ({}, "empty_patch"), ({"email": "x@example.com"}, "unknown_field"),
        ({"plan": "premium", "balance": "100"}, "unknown_field"),
        ({"plan": "gold"}, "invalid_field"), ({"plan": None}, "invalid_field"), ({"plan": 1}, "invalid_field"),
        ({"role": "root"}, "invalid_field"), ({"role": ["admin"]}, "invalid_field"),
        ({"plan": "premium", "role": "boss"}, "invalid_field"),
        ({"is_active": "false"}, "invalid_field"), ({"is_active": 0}, "invalid_field"),
        ({"is_active": None}, "invalid_field"),
        ({"manager_id": str(people.manager)}, "invalid_field"), ({"manager_id": True}, "invalid_field"),
        ({"manager_id": 1.5}, "invalid_field"),
        ({"manager_id": -1}, "invalid_manager"), ({"manager_id": 0}, "invalid_manager"),
        ({"manager_id": 2**63}, "invalid_manager"), ({"manager_id": 999999}, "invalid_manager"),
        ({"manager_id": people.loner}, "invalid_manager"), ({"manager_id": people.admin}, "invalid_manager"),
        ({"manager_id": inactive_manager}, "invalid_manager"),
        ({"manager_id": people.client}, "invalid_manager"),
        ({"plan": "premium", "manager_id": people.loner}, "invalid_manager"),
    ]
    before = await user_row(database, people.client)
    for body, code in cases:
        response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                                       json=body)
        assert await error_code(response, 400) == code, body
    for raw in (b"{not json", b"[1]", b'"plan"', b'{"manager_id": 99999999999999999999999}'):
        response = await gateway.patch(f"/api/v1/admin/users/{people.client}", data=raw,
                                       headers={**people.as_admin, "Content-Type": "application/json"})
        assert response.status == 400, raw
    assert await user_row(database, people.client) == before
    assert await audit_count(database) == 0


async def test_patching_unknown_ids_is_404(gateway, database, people):
    for user_id in BAD_IDS:
        response = await gateway.patch(f"/api/v1/admin/users/{user_id}", headers=people.as_admin,
                                       json={"plan": "premium"})
        assert await error_code(response, 404) == "user_not_found", user_id


async def test_an_admin_cannot_deactivate_or_demote_themselves(gateway, database, people):
    for body in ({"is_active": False}, {"role": "manager"}, {"role": "client", "plan": "premium"}):
        response = await gateway.patch(f"/api/v1/admin/users/{people.admin}", headers=people.as_admin,
                                       json=body)
        assert await error_code(response, 400) == "cannot_change_self", body
    assert await user_row(database, people.admin) == {
        "role": "admin", "plan": "free", "is_active": True, "manager_id": None}
    response = await gateway.patch(f"/api/v1/admin/users/{people.admin}", headers=people.as_admin,
                                   json={"plan": "enterprise", "role": "admin"})
    assert response.status == 200


async def test_an_admin_may_demote_another_admin(gateway, database, people):
    second = await create(database, "root2@example.com", role="admin")
    response = await gateway.patch(f"/api/v1/admin/users/{second}", headers=people.as_admin,
                                   json={"role": "client"})
    assert response.status == 200
    assert (await user_row(database, second))["role"] == "client"


# -- effect on the proxy -----------------------------------------------------------------------

async def test_deactivating_a_user_refuses_their_cached_token_on_the_next_request(gateway, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    response = await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager,
                                   json={"is_active": False})
    assert response.status == 200
    refused = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert await error_code(refused, 403) == "account_disabled"


async def test_reactivating_a_user_lets_their_token_through_again(gateway, database, people):
    issued = await make_token(database, email="alice@example.com")
    path = f"/api/v1/admin/users/{people.client}"
    await gateway.patch(path, headers=people.as_admin, json={"is_active": False})
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 403
    await gateway.patch(path, headers=people.as_admin, json={"is_active": True})
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200


async def test_a_plan_change_applies_the_new_rate_limit_on_the_next_request(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5})
    await create(database, "root@example.com", role="admin", can_log_in=True)
    as_admin = await login(gateway, "root@example.com")
    issued = await make_token(database, email="desk@example.com")
    user_id = (await users.by_email(database, "desk@example.com")).id
    for _ in range(2):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200 and response.headers["RateLimit-Limit"] == "2"
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 429
    response = await gateway.patch(f"/api/v1/admin/users/{user_id}", headers=as_admin, json={"plan": "premium"})
    assert response.status == 200
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 200 and response.headers["RateLimit-Limit"] == "5"


async def test_a_plan_change_does_not_revoke_a_token(gateway, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_admin,
                        json={"plan": "enterprise"})
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    # Enterprise has no token or user window; only the client IP's window is left to report.
    assert response.status == 200
    assert response.headers["RateLimit-Limit"] == str(gateway.settings.ip_limit_per_min)


# -- a user's tokens ---------------------------------------------------------------------------

async def issue(database, user_id: int, *, hours: float = 24, created: dt.datetime | None = None):
    return await access_tokens.issue(database, user_id=user_id, hours=hours, scope="full",
                              now=created or dt.datetime.now(dt.timezone.utc))


async def test_the_token_list_shows_price_refund_and_activity_but_never_the_hash(gateway, database, people):
    bought = await issue(database, people.client)
    await database.execute("UPDATE access_tokens SET price_micro = 18000000, duration_hours = 24 WHERE id = $1",
                           bought.id)
    refunded = await issue(database, people.client)
    await database.execute(
        "UPDATE access_tokens SET revoked_at = now(), refund_micro = 1500000, price_micro = 10000000 "
        "WHERE id = $1", refunded.id)
    expired = await issue(database, people.client, hours=1,
                          created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3))
    await issue(database, people.other_client)
    response = await gateway.get(f"/api/v1/admin/users/{people.client}/tokens", headers=people.as_admin)
    assert response.status == 200
    body = await response.json()
    assert body["total"] == 3
    items = {item["id"]: item for item in body["items"]}
    assert set(items) == {bought.id, refunded.id, expired.id}
    assert set(items[bought.id]) == {"id", "scope", "created_at", "expires_at", "revoked_at",
                                     "duration_hours", "price", "refund", "active"}
    assert (items[bought.id]["price"], items[bought.id]["refund"], items[bought.id]["active"],
            items[bought.id]["duration_hours"]) == ("18", None, True, 24)
    assert (items[refunded.id]["price"], items[refunded.id]["refund"], items[refunded.id]["active"]) == (
        "10", "1.5", False)
    assert items[refunded.id]["revoked_at"] is not None
    assert items[expired.id]["active"] is False and items[expired.id]["price"] == "0"
    assert "hash" not in await response.text()


async def test_active_only_lists_only_usable_tokens(gateway, database, people):
    usable = await issue(database, people.client)
    revoked = await issue(database, people.client)
    await access_tokens.revoke(database, revoked.id, now=dt.datetime.now(dt.timezone.utc))
    await issue(database, people.client, hours=1, created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    body = await (await gateway.get(f"/api/v1/admin/users/{people.client}/tokens?active_only=true",
                                    headers=people.as_manager)).json()
    assert [item["id"] for item in body["items"]] == [usable.id] and body["total"] == 1


async def test_bad_token_list_queries_are_400(gateway, database, people):
    for query in ("active_only=yes", "active_only=1", "limit=0", "skip=x"):
        response = await gateway.get(f"/api/v1/admin/users/{people.client}/tokens?{query}",
                                     headers=people.as_admin)
        assert await error_code(response, 400) == "invalid_query", query


# -- force revoke ------------------------------------------------------------------------------

async def test_force_revoke_refuses_the_next_request_and_refunds_nothing(gateway, database, people):
    await deposit(database, people.client, 5, key="d1")
    issued = await make_token(database, email="alice@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    response = await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_admin)
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["revoked"], body["already_revoked"]) == (issued.id, True, False)
    refused = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert await error_code(refused, 401) == "token_revoked"
    row = await database.fetchrow("SELECT revoked_at, revoked_by, refund_micro FROM access_tokens WHERE id = $1",
                                  issued.id)
    assert row["revoked_at"] is not None and row["revoked_by"] == people.admin and row["refund_micro"] is None
    assert (await ledger.balance(database, people.client)).available_micro == 5 * ledger.MICRO_PER_CREDIT
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'refund'") == 0


async def test_force_revoke_writes_one_audit_entry_even_when_repeated(gateway, database, people):
    issued = await issue(database, people.client)
    first = await (await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_admin)).json()
    second = await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_admin)
    assert second.status == 200
    body = await second.json()
    assert body["already_revoked"] is True and body["revoked_at"] == first["revoked_at"]
    rows = await database.fetch("SELECT actor_id, action, target_type, target_id FROM audit_log")
    assert [tuple(row) for row in rows] == [(people.admin, "token.force_revoke", "access_token", str(issued.id))]


async def test_a_manager_force_revokes_their_clients_token(gateway, database, people):
    issued = await issue(database, people.client)
    response = await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_manager)
    assert response.status == 200
    assert await database.fetchval("SELECT revoked_by FROM access_tokens WHERE id = $1", issued.id) == people.manager


async def test_a_manager_gets_404_revoking_anyone_elses_token_and_it_stays_usable(gateway, database, people):
    foreign = [await issue(database, user_id) for user_id in (people.other_client, people.loner, people.admin)]
    for issued in foreign:
        response = await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_manager)
        assert await error_code(response, 404) == "token_not_found", issued.id
    assert await database.fetchval("SELECT count(*) FROM access_tokens WHERE revoked_at IS NOT NULL") == 0
    assert (await gateway.get(ECHO, headers=proxy_headers(foreign[0].token))).status == 200
    assert await audit_count(database) == 0


async def test_force_revoking_unknown_or_malformed_ids_is_404(gateway, database, people):
    for token_id in BAD_IDS:
        response = await gateway.post(f"/api/v1/admin/tokens/{token_id}/revoke", headers=people.as_admin)
        assert await error_code(response, 404) == "token_not_found", token_id


# -- stats -------------------------------------------------------------------------------------

async def test_stats_sum_each_kind_of_money_that_moved(gateway, database, people):
    now = dt.datetime.now(dt.timezone.utc)
    await deposit(database, people.client, 100, key="d1")
    await move(database, "purchase", people.client, "revenue", 18, key="p1")
    await move(database, "usage", people.client, "revenue", 2, key="u1")
    await move(database, "refund", "refunds", people.client, 5, key="r1")
    await move(database, "referral_bonus", "promotions", people.loner, 10, key="b1")
    hold = await move(database, "usage", people.client, "revenue", 3, key="h1",
                      hold_until=now + dt.timedelta(hours=1))
    await move(database, "usage", people.client, "revenue", 4, key="h2", hold_until=now + dt.timedelta(hours=1))
    async with database.acquire() as connection:
        await ledger.resolve(connection, key="h1:post", hold_id=hold.id, now=now, post_micro=1_000_000)
    body = await (await gateway.get("/api/v1/admin/stats", headers=people.as_admin)).json()
    # spent: 18 + 2 + the 1 posted from a hold of 3; the open hold of 4 is not spent yet.
    assert body["credits"] == {"sold": "100", "spent": "21", "refunded": "5", "bonuses": "10"}


async def test_stats_count_only_money_inside_the_period(gateway, database, people):
    now = dt.datetime.now(dt.timezone.utc)
    await deposit(database, people.client, 1, key="today", when=now - dt.timedelta(hours=1))
    await deposit(database, people.client, 10, key="this-week", when=now - dt.timedelta(days=3))
    await deposit(database, people.client, 100, key="this-month", when=now - dt.timedelta(days=20))
    await deposit(database, people.client, 1000, key="long-ago", when=now - dt.timedelta(days=90))
    sold = {}
    for period in ("day", "week", "month", "all"):
        response = await gateway.get(f"/api/v1/admin/stats?period={period}", headers=people.as_admin)
        sold[period] = (await response.json())["credits"]["sold"]
    assert sold == {"day": "1", "week": "11", "month": "111", "all": "1111"}


async def test_stats_period_follows_the_gateway_clock(gateway, database, people, clock):
    two_days_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    await deposit(database, people.client, 7, key="d1", when=two_days_ago)
    clock.advance(-36 * 3600)  # the gateway's "now" is a day and a half ago: the deposit is within a day
    as_admin = await login(gateway, "root@example.com")
    body = await (await gateway.get("/api/v1/admin/stats?period=day", headers=as_admin)).json()
    assert body["credits"]["sold"] == "7"


async def test_stats_count_users_by_role_and_active_tokens(gateway, database, people):
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", people.loner)
    await issue(database, people.client)
    await issue(database, people.other_client)
    revoked = await issue(database, people.loner)
    await access_tokens.revoke(database, revoked.id, now=dt.datetime.now(dt.timezone.utc))
    await issue(database, people.loner, hours=1, created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    body = await (await gateway.get("/api/v1/admin/stats", headers=people.as_admin)).json()
    assert body["users"]["total"] == 6 and body["users"]["active"] == 5
    assert body["users"]["by_role"] == {"client": 3, "manager": 2, "admin": 1}
    assert body["active_tokens"] == 2


async def test_a_managers_stats_cover_only_their_clients(gateway, database, people):
    await deposit(database, people.client, 30, key="mine")
    await move(database, "purchase", people.client, "revenue", 10, key="mine-buy")
    await deposit(database, people.other_client, 500, key="theirs")
    await deposit(database, people.loner, 700, key="nobodys")
    await issue(database, people.client)
    await issue(database, people.other_client)
    body = await (await gateway.get("/api/v1/admin/stats?period=week", headers=people.as_manager)).json()
    assert body["users"] == {"total": 1, "active": 1, "new": 1,
                             "by_role": {"client": 1, "manager": 0, "admin": 0}}
    assert body["active_tokens"] == 1
    assert body["credits"] == {"sold": "30", "spent": "10", "refunded": "0", "bonuses": "0"}


async def test_a_bad_stats_period_is_400(gateway, database, people):
    for period in ("year", "DAY", "1", "all;drop"):
        response = await gateway.get("/api/v1/admin/stats", params={"period": period}, headers=people.as_admin)
        assert await error_code(response, 400) == "invalid_query", period


# -- audit log ---------------------------------------------------------------------------------

async def test_the_audit_log_lists_newest_first_and_filters(gateway, database, people):
    issued = await issue(database, people.loner)
    await gateway.patch(f"/api/v1/admin/users/{people.client}", headers=people.as_manager, json={"plan": "premium"})
    await gateway.patch(f"/api/v1/admin/users/{people.loner}", headers=people.as_admin, json={"plan": "premium"})
    await gateway.post(f"/api/v1/admin/tokens/{issued.id}/revoke", headers=people.as_admin)
    body = await (await gateway.get("/api/v1/admin/audit", headers=people.as_admin)).json()
    assert body["total"] == 3
    assert [item["action"] for item in body["items"]] == ["token.force_revoke", "user.update", "user.update"]
    newest = body["items"][0]
    assert set(newest) == {"id", "actor_id", "action", "target_type", "target_id", "ip", "details", "created_at"}
    assert newest["details"] == {"user_id": people.loner, "refund_micro": None}
    for query, count in ((f"actor_id={people.manager}", 1), ("action=user.update", 2),
                         ("target_type=access_token", 1), (f"target_type=user&target_id={people.loner}", 1),
                         ("action=user.delete", 0), ("skip=1&limit=1", 3)):
        page = await (await gateway.get(f"/api/v1/admin/audit?{query}", headers=people.as_admin)).json()
        assert page["total"] == count, query
    page = await (await gateway.get("/api/v1/admin/audit?skip=1&limit=1", headers=people.as_admin)).json()
    assert [item["id"] for item in page["items"]] == [body["items"][1]["id"]]


async def test_bad_audit_queries_are_400(gateway, database, people):
    for query in ("actor_id=abc", "actor_id=-1", "actor_id=99999999999999999999", "limit=0", "limit=500",
                  "skip=-1", "action=" + "a" * 201):
        response = await gateway.get(f"/api/v1/admin/audit?{query}", headers=people.as_admin)
        assert await error_code(response, 400) == "invalid_query", query


async def test_stats_count_admin_top_ups_as_credits_sold(gateway, database, people):
    """The seed's dashboard: credits an admin adds are sold credits (deductions are not negative sales)."""
    for credits, key in (("25", "top-up"), ("-5", "deduction")):
        response = await gateway.post(f"/api/v1/admin/users/{people.client}/adjust", headers={
            **people.as_admin, "Idempotency-Key": key}, json={"credits": credits, "reason": "support"})
        assert response.status == 201, await response.text()
    await deposit(database, people.client, 10, key="paid")
    body = await (await gateway.get("/api/v1/admin/stats", headers=people.as_admin)).json()
    assert body["credits"]["sold"] == "35"
