"""AI usage by model, key and day over a date range; for one user; scoped for managers."""

from __future__ import annotations

import datetime as dt

from tests.support.admin_ui import credentials

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
