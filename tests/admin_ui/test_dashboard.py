"""The dashboard: traffic for admins, credits sold and spent today / 7 d / 30 d, AI by model and top
users — as SVG charts; a manager's numbers cover their clients only."""

from __future__ import annotations

import re

from tests.support.accounts import deposit
from tests.support.admin_ui import logged_in


async def test_the_dashboard_draws_its_charts_and_counts_todays_credits(as_admin, database, people):
    await deposit(database, people.client, 40)
    await database.execute("""
        INSERT INTO ai_usage (request_id, user_id, provider, model, input_tokens, output_tokens, charged_micro,
                              outcome, created_at)
        VALUES ('r1', $1, 'openai', 'gpt-4o-mini', 1000, 200, 2500000, 'ok', now())""", people.client)
    page = await (await as_admin.get("/admin/")).text()
    assert page.count("<svg") == 5  # traffic, credits per day, AI credits, AI tokens, top users
    assert 'id="requests-per-s"' in page and 'id="p95"' in page and 'id="open-sessions"' in page
    assert page.count('<div class="value">40</div><div class="label">sold</div>') == 3  # today, 7 d, 30 d
    assert "gpt-4o-mini" in page and "alice@example.com" in page


async def test_a_managers_dashboard_shows_their_clients_only_and_no_gateway_traffic(as_manager, database, people):
    await deposit(database, people.client, 7)
    await deposit(database, people.other_client, 9)
    page = await (await as_manager.get("/admin/")).text()
    assert 'id="requests-per-s"' not in page
    assert '<div class="value">7</div><div class="label">sold</div>' in page and ">16<" not in page


async def test_days_before_yesterday_come_from_the_daily_roll_up_and_agree_with_the_transfers(
        gateway, database, people):
    """A transfer five days old (made straight in the database: the API writes only the present)."""
    await deposit(database, people.client, 11)
    await database.execute("""
        INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro,
                               phase, kind, user_id, created_at)
        SELECT 'old-deposit', '\\x00', debit_account_id, credit_account_id, 3000000, 'posted', 'deposit', user_id,
               now() - interval '5 days' FROM transfers LIMIT 1""")
    await database.execute("UPDATE accounts SET credits_posted = credits_posted + 3000000 WHERE user_id = $1",
                           people.client)
    await database.execute("UPDATE accounts SET debits_posted = debits_posted + 3000000 "
                           "WHERE code = 'payment_clearing'")
    await logged_in(gateway, "root@example.com")  # the first dashboard: the closed days are rolled up
    assert await database.fetchval("SELECT sum(amount_micro) FROM ledger_daily WHERE kind = 'deposit'") == 3_000_000
    page = await (await gateway.get("/admin/")).text()  # the second: read from the roll-up
    sold = re.findall(r'<div class="value">([^<]*)</div><div class="label">sold', page)
    assert sold == ["11", "14", "14"]
