"""Erasing a user through the admin UI: afterwards no table (and no Redis key) holds their email,
username, name, addresses, device ids or user agent; every credential is refused; the ledger
keeps their transfers and reconciles; the audit log stays append-only for everything else."""

from __future__ import annotations

import asyncpg
import pytest

import ledger
from gateway.proxy.resources import SESSIONS
from tests.support.accounts import deposit
from tests.support.admin_ui import logged_in, person

ALICE = {"email": "alice.erasable@example.com", "username": "alice_erasable", "full_name": "Alice Erasable"}
HOME, OFFICE, PHONE = "203.0.113.7", "198.51.100.23", "192.0.2.77"
DEVICE, AGENT = "alice-laptop-7f3a", "AliceBrowser/9.1"


def from_address(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


async def leave_traces(gateway, database) -> dict:
    """Alice registers, logs in, fails a login, asks for a magic link, buys a token, makes an API key
    limited to her office and uses the proxy from there — each from one of her addresses."""
    response = await gateway.post("/api/v1/auth/register", headers=from_address(HOME), json={
        **ALICE, "password": "correct horse battery"})
    assert response.status == 201, await response.text()
    alice = await response.json()
    login = await gateway.post("/api/v1/auth/login", headers=from_address(HOME),
                               json={"email": ALICE["email"], "password": "correct horse battery"})
    tokens = await login.json()
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    wrong = await gateway.post("/api/v1/auth/login", headers=from_address(PHONE),
                               json={"email": ALICE["email"], "password": "not her password"})
    assert wrong.status == 401
    assert (await gateway.post("/api/v1/auth/magic-link", json={"email": ALICE["email"]},
                               headers=from_address(HOME))).status == 202
    await deposit(database, alice["id"], 50)
    bought = await gateway.post("/api/v1/tokens/purchase", json={"duration_hours": 24},
                                headers={**bearer, **from_address(HOME)})
    assert bought.status == 201, await bought.text()
    access_token = (await bought.json())["tokens"][0]["token"]
    key = await gateway.post("/api/v1/keys", json={"name": "Alice Erasable's laptop", "ip_allowlist": [OFFICE]},
                             headers={**bearer, **from_address(OFFICE)})
    assert key.status == 201, await key.text()
    proxied = await gateway.get("/api/v1/proxy/echo/x", headers={
        "X-Access-Token": access_token, "X-Device-ID": DEVICE, "User-Agent": AGENT, **from_address(OFFICE)})
    assert proxied.status == 200
    # A browser session of that device, used once (its Redis record names the device too).
    opened = await gateway.post("/api/v1/proxy/session", headers={
        "X-Access-Token": access_token, "X-Device-ID": DEVICE, **from_address(OFFICE)})
    assert opened.status == 201
    cookie = {"Cookie": f"tollgate_session={opened.cookies['tollgate_session'].value}"}
    gateway.session.cookie_jar.clear()
    assert (await gateway.get("/api/v1/proxy/echo/x", headers={**cookie, "User-Agent": AGENT,
                                                              **from_address(OFFICE)})).status == 200
    await gateway.app[SESSIONS].flush()
    return {"id": alice["id"], "token": access_token, "key": (await key.json())["key"], "tokens": tokens}


async def rows_mentioning(database, needle: str) -> list[str]:
    tables = [row["tablename"] for row in await database.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    found = []
    for table in tables:
        count = await database.fetchval(f'SELECT count(*) FROM "{table}" t WHERE t::text ILIKE $1', f"%{needle}%")
        if count:
            found.append(f"{table}: {count}")
    return found


async def redis_mentioning(redis_client, needles: list[str]) -> list[str]:
    found = []
    async for key in redis_client.scan_iter(count=1000):
        values = [key]
        if await redis_client.type(key) == "hash":
            values += list((await redis_client.hgetall(key)).values())
        found += [f"{key}: {needle}" for needle in needles for value in values if needle.lower() in value.lower()]
    return found


@pytest.fixture
async def erased(gateway_factory, database):
    gateway = await gateway_factory(trust_forwarded=True)
    await person(database, "root@example.com", role="admin")
    traces = await leave_traces(gateway, database)
    needles = [ALICE["email"], ALICE["username"], ALICE["full_name"], HOME, OFFICE, PHONE, DEVICE, AGENT]
    for needle in (ALICE["email"], ALICE["full_name"], HOME, OFFICE, DEVICE, AGENT):
        assert await rows_mentioning(database, needle), needle  # there before
    csrf = await logged_in(gateway, "root@example.com")
    answer = await gateway.post(f"/admin/users/{traces['id']}/erase", allow_redirects=False,
                                data={"csrf_token": csrf, "confirm": ALICE["email"]})
    assert answer.status == 303, await answer.text()
    gateway.csrf = csrf
    return gateway, traces, needles


async def test_after_erasure_no_table_holds_the_users_email_names_addresses_or_devices(erased, database):
    _, _, needles = erased
    assert {needle: await rows_mentioning(database, needle) for needle in needles} == {n: [] for n in needles}


async def test_after_erasure_no_redis_key_names_them_either(erased, redis_client):
    _, traces, needles = erased
    import hashlib

    digest = hashlib.sha256(ALICE["email"].encode()).hexdigest()
    assert await redis_mentioning(redis_client, needles + [digest]) == []


async def test_after_erasure_every_credential_is_refused(erased):
    gateway, traces, _ = erased
    proxied = await gateway.get("/api/v1/proxy/echo/x", headers={"X-Access-Token": traces["token"],
                                                                 "X-Device-ID": DEVICE})
    assert proxied.status == 401
    ai = await gateway.post("/openai/v1/chat/completions", headers={"Authorization": "Bearer " + traces["key"],
                                                                     "X-Forwarded-For": OFFICE},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert ai.status in (401, 403), await ai.text()
    me = await gateway.get("/api/v1/auth/me", headers={"Authorization": "Bearer " + traces["tokens"]["access_token"]})
    assert me.status == 401
    refreshed = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": traces["tokens"]["refresh_token"]})
    assert refreshed.status == 401
    login = await gateway.post("/api/v1/auth/login",
                               json={"email": ALICE["email"], "password": "correct horse battery"})
    assert login.status == 401


async def test_after_erasure_the_ledger_keeps_the_users_transfers_and_reconciles(erased, database):
    _, traces, _ = erased
    balance = await ledger.balance(database, traces["id"])
    assert balance.available_micro == 50_000_000 - 18_000_000  # the deposit less the token, kept
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE user_id = $1", traces["id"]) == 2
    assert (await ledger.reconcile(database)).ok
    user = await database.fetchrow("SELECT email, erased_at, is_active FROM users WHERE id = $1", traces["id"])
    assert user["email"] == f"erased-{traces['id']}@erased.invalid" and user["erased_at"] and not user["is_active"]


async def test_the_erasure_is_audited_with_actor_target_and_address(erased, database):
    _, traces, _ = erased
    entry = await database.fetchrow("SELECT * FROM audit_log WHERE action = 'user.erase'")
    admin_id = await database.fetchval("SELECT id FROM users WHERE email = 'root@example.com'")
    assert (entry["actor_id"], entry["target_id"], entry["ip"]) == (admin_id, str(traces["id"]), "127.0.0.1")


async def test_the_audit_log_still_refuses_changes_and_deletions_outside_an_erasure(erased, database):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await database.execute("UPDATE audit_log SET ip = '' WHERE id = (SELECT min(id) FROM audit_log)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await database.execute("DELETE FROM audit_log")


async def test_an_erased_user_cannot_be_changed_or_erased_again(erased, database):
    gateway, traces, _ = erased
    again = await gateway.post(f"/admin/users/{traces['id']}/update",
                               data={"csrf_token": gateway.csrf, "is_active": "true"})
    assert again.status == 400
    assert not await database.fetchval("SELECT is_active FROM users WHERE id = $1", traces["id"])


async def test_an_admin_cannot_be_erased(gateway, database):
    await person(database, "root@example.com", role="admin")
    other = await person(database, "second@example.com", role="admin")
    csrf = await logged_in(gateway, "root@example.com")
    answer = await gateway.post(f"/admin/users/{other}/erase",
                                data={"csrf_token": csrf, "confirm": "second@example.com"})
    assert answer.status == 400
    assert await database.fetchval("SELECT erased_at FROM users WHERE id = $1", other) is None


async def test_audit_details_that_mention_the_user_elsewhere_are_pseudonymised(gateway, database):
    await person(database, "root@example.com", role="admin")
    target = await person(database, "carol.target@example.com", full_name="Carol Target")
    await database.execute("INSERT INTO audit_log (action, details) VALUES ('note', $1::jsonb)",
                           '{"text": "called Carol Target at carol.target@example.com", '
                           '"nested": {"x": "CAROL TARGET"}}')
    csrf = await logged_in(gateway, "root@example.com")
    answer = await gateway.post(f"/admin/users/{target}/erase", allow_redirects=False,
                                data={"csrf_token": csrf, "confirm": "carol.target@example.com"})
    assert answer.status == 303
    details = await database.fetchval("SELECT details::text FROM audit_log WHERE action = 'note'")
    assert "carol" not in details.lower() and details.count("erased") == 3


async def test_payments_keep_their_money_facts_but_not_the_email_they_were_made_with(gateway_factory, database):
    """A guest payment (the email in its row and in a Robokassa link) and a pending guest payment with
    the same email: after erasure no table holds the email; the pending one belongs to the erased
    account, so a late callback credits an account the ledger knows."""
    gateway = await gateway_factory(trust_forwarded=True)
    await person(database, "root@example.com", role="admin")
    alice = await (await gateway.post("/api/v1/auth/register", json={
        **ALICE, "password": "correct horse battery"})).json()
    link = f"https://pay.example/Merchant/Index.aspx?Email={ALICE['email']}&OutSum=10.00"
    for user_id, status in ((alice["id"], "failed"), (None, "pending")):
        await database.execute(
            "INSERT INTO payments (provider, currency, amount, credits_micro, status, user_id, guest_email, "
            "payment_url, created_at, updated_at) VALUES ('robokassa', 'RUB', 950, 10000000, $1, $2, $3, $4, "
            "now(), now())", status, user_id, ALICE["email"].upper(), link)
    csrf = await logged_in(gateway, "root@example.com")
    answer = await gateway.post(f"/admin/users/{alice['id']}/erase", allow_redirects=False,
                                data={"csrf_token": csrf, "confirm": ALICE["email"]})
    assert answer.status == 303, await answer.text()
    assert await rows_mentioning(database, ALICE["email"]) == []
    rows = await database.fetch("SELECT user_id, guest_email, payment_url, amount FROM payments ORDER BY id")
    assert [tuple(row) for row in rows] == [(alice["id"], None, "", 950), (alice["id"], None, "", 950)]
