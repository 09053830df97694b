"""Actions from a user's page: each goes through the JSON API's rules, lands in the audit log with
actor, target and address, and takes effect where it matters (the proxy, the AI routes, the ledger)."""

from __future__ import annotations

import ledger
from gateway.proxy.resources import SESSIONS
from tests.support.accounts import deposit, make_token, proxy_headers
from tests.support.admin_ui import credentials

ECHO = "/api/v1/proxy/echo/x"


async def post(client, path: str, **fields: str):
    return await client.post(path, data={"csrf_token": client.csrf, **fields}, allow_redirects=False)


async def test_a_top_up_with_a_reason_moves_credits_once_however_often_the_form_is_sent(as_admin, database, people):
    for _ in range(2):  # a double click sends the same idempotency key twice
        answer = await post(as_admin, f"/admin/users/{people.client}/adjust", credits="12.5", reason="goodwill",
                            idempotency_key="same-key-1234567890")
        assert answer.status == 303 and answer.headers["Location"].endswith("?notice=adjusted")
    assert (await ledger.balance(database, people.client)).available_micro == 12_500_000
    entry = await database.fetchrow("SELECT * FROM audit_log WHERE action = 'credits.adjust'")
    assert (entry["actor_id"], entry["target_id"], entry["ip"]) == (people.admin, str(people.client), "127.0.0.1")


async def test_a_deduction_beyond_the_balance_is_refused_and_moves_nothing(as_admin, database, people):
    await deposit(database, people.client, 3)
    answer = await post(as_admin, f"/admin/users/{people.client}/adjust", credits="-5", reason="fee",
                        idempotency_key="deduct-key-1234567890")
    assert answer.status == 402 and "text/html" in answer.headers["Content-Type"]
    assert (await ledger.balance(database, people.client)).available_micro == 3_000_000


async def test_a_bad_amount_or_missing_reason_is_a_400_page(as_admin, people):
    for fields in ({"credits": "abc", "reason": "x"}, {"credits": "1", "reason": " "}, {"credits": "0", "reason": "x"}):
        answer = await post(as_admin, f"/admin/users/{people.client}/adjust", idempotency_key="k" * 20, **fields)
        assert answer.status == 400, fields


async def test_suspending_a_user_refuses_their_token_on_the_next_proxied_request(as_admin, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    assert (await post(as_admin, f"/admin/users/{people.client}/update", is_active="false")).status == 303
    refused = await as_admin.get(ECHO, headers=proxy_headers(issued.token))
    assert refused.status == 403
    assert (await post(as_admin, f"/admin/users/{people.client}/update", is_active="true")).status == 303
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token))).status == 200


async def test_an_admin_changes_role_plan_and_manager(as_admin, database, people):
    for fields in ({"plan": "enterprise"}, {"manager_id": str(people.other_manager)}, {"role": "manager"}):
        assert (await post(as_admin, f"/admin/users/{people.client}/update", **fields)).status == 303
    row = await database.fetchrow("SELECT role, plan, manager_id FROM users WHERE id = $1", people.client)
    assert (row["role"], row["plan"], row["manager_id"]) == ("manager", "enterprise", people.other_manager)
    changes = await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'user.update' AND actor_id = $1",
                                      people.admin)
    assert changes == 3


async def test_a_client_cannot_be_assigned_to_someone_who_is_not_a_manager(as_admin, database, people):
    answer = await post(as_admin, f"/admin/users/{people.client}/update", manager_id=str(people.other_client))
    assert answer.status == 400
    assert await database.fetchval("SELECT manager_id FROM users WHERE id = $1", people.client) == people.manager


async def test_revoking_a_token_refuses_it_on_the_next_proxied_request(as_admin, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    answer = await post(as_admin, f"/admin/tokens/{issued.id}/revoke")
    assert answer.status == 303 and answer.headers["Location"] == f"/admin/users/{people.client}?notice=token_revoked"
    refused = await as_admin.get(ECHO, headers=proxy_headers(issued.token))
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "token_revoked"


async def test_revoking_an_api_key_marks_it_revoked_and_queues_its_refusal(as_admin, database, people):
    _, key = await credentials(database, people.client)
    assert (await post(as_admin, f"/admin/keys/{key}/revoke")).status == 303
    assert await database.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", key)
    entry = await database.fetchrow("SELECT actor_id, target_type, ip FROM audit_log "
                                    "WHERE action = 'api_key.force_revoke'")
    assert tuple(entry) == (people.admin, "api_key", "127.0.0.1")


async def test_releasing_the_device_binding_lets_another_device_use_the_token_at_once(as_admin, database, people):
    issued = await make_token(database, email="alice@example.com")
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409
    await as_admin.app[SESSIONS].flush()
    assert (await post(as_admin, f"/admin/tokens/{issued.id}/release")).status == 303
    assert (await as_admin.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    assert await database.fetchval("SELECT ended_at IS NOT NULL FROM proxy_sessions WHERE device_id = 'laptop'")


async def test_the_user_page_shows_profile_balance_tokens_keys_sessions_and_entries(as_admin, database, people):
    await deposit(database, people.client, 42)
    await credentials(database, people.client)
    page = await (await as_admin.get(f"/admin/users/{people.client}")).text()
    for text in ("Alice Example", "42", 'id="tokens"', "laptop", 'id="sessions"', "deposit", 'id="erase"'):
        assert text in page, text
