"""AI usage by model, key and day over a date range; for one user; scoped for managers."""

from __future__ import annotations

import datetime as dt

from tests.support.admin_ui import credentials, logged_in

INSERT = """
INSERT INTO ai_usage (request_id, api_key_id, user_id, provider, model, input_tokens, output_tokens, charged_micro,
                      outcome, created_at)
VALUES ($1, $2, $3, 'openai', $4, 100, 10, $5, 'ok', now() - make_interval(days => $6))"""


async def test_usage_is_summed_by_model_key_and_day_within_the_range(as_admin, database, people):
    _, key = await credentials(database, people.client)
    for number, (model, days_ago) in enumerate((("gpt-4o", 0), ("gpt-4o", 1), ("gpt-4o-mini", 0), ("gpt-4o", 20))):
        await database.execute(INSERT, f"r{number}", key, people.client, model, 1_000_000, days_ago)
    page = await (await as_admin.get("/admin/ai-usage")).text()
    by_model = page.split('id="by-model"')[1].split("</table>")[0]
    assert 'gpt-4o</td><td class="number">2</td>' in by_model
    assert 'gpt-4o-mini</td><td class="number">1</td>' in by_model
    assert page.split('id="by-day"')[1].count("<tr><td>") == 2
    today = dt.datetime.now(dt.timezone.utc).date()
    month = await (await as_admin.get(f"/admin/ai-usage?from={today - dt.timedelta(days=30)}&to={today}")).text()
    assert "gpt-4o</td><td class=\"number\">3</td>" in month
    assert (await as_admin.get(f"/admin/ai-usage?from={today}&to={today - dt.timedelta(days=1)}")).status == 400


async def test_a_manager_sees_only_their_clients_usage(as_manager, database, people):
    for number, user in enumerate((people.client, people.other_client)):
        await database.execute(INSERT, f"r{number}", None, user, f"model-{number}", 1, 0)
    page = await (await as_manager.get("/admin/ai-usage")).text()
    assert "model-0" in page and "model-1" not in page


async def test_long_ranges_read_the_daily_roll_up_and_agree_with_the_calls(gateway, database, people):
    """Calls of closed days made straight in the database before anyone looks (the gateway writes
    only the present)."""
    for number, days_ago in enumerate((0, 1, 5, 5, 20)):
        await database.execute(INSERT, f"r{number}", None, people.client, "gpt-4o", 2_000_000, days_ago)
    as_admin = gateway
    await logged_in(as_admin, "root@example.com")
    today = dt.datetime.now(dt.timezone.utc).date()
    path = f"/admin/ai-usage?from={today - dt.timedelta(days=29)}&to={today}"
    first = await (await as_admin.get(path)).text()  # rolls the closed days up
    assert await database.fetchval("SELECT sum(calls) FROM ai_usage_daily") == 3  # 5, 5 and 20 days ago
    assert await database.fetchval("SELECT count(*) FROM ai_usage_days_rolled") == 28
    second = await (await as_admin.get(path)).text()
    for page in (first, second):
        assert 'gpt-4o</td><td class="number">5</td>' in page and "<td class=\"number\">10</td></tr>" in page
        assert 'id="by-key-note"' in page and 'id="by-key"' not in page  # longer than 7 days: no key table
    one_user = await (await as_admin.get(path + f"&user={people.client}")).text()
    assert 'id="by-key"' in one_user


async def test_a_range_at_the_ends_of_the_calendar_is_a_400_not_a_500(as_admin, database):
    """The span's edges are computed: past 9999-12-31 or before 0001-01-01 they were an OverflowError (a 500)."""
    for query in ("to=9999-12-31", "to=0001-01-01"):
        response = await as_admin.get(f"/admin/ai-usage?{query}")
        assert response.status == 400, (query, response.status)
