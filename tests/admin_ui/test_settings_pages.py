"""Settings (admins): model prices through the JSON API's rules, token prices and plans shown, bundles
created, changed and deleted — each audited."""

from __future__ import annotations

from gateway.ai.resources import AI


async def post(client, path: str, **fields: str):
    return await client.post(path, data={"csrf_token": client.csrf, **fields}, allow_redirects=False)


async def test_a_saved_price_is_stored_used_at_once_and_audited(as_admin, database):
    answer = await post(as_admin, "/admin/settings/prices", model="gpt-4o", input_per_mtok="3.5", output_per_mtok="12",
                        cached_input_per_mtok="1", max_output_tokens="4096")
    assert answer.status == 303
    row = await database.fetchrow("SELECT input_per_mtok_micro, max_output_tokens FROM model_prices "
                                  "WHERE model = 'gpt-4o'")
    assert tuple(row) == (3_500_000, 4096)
    assert as_admin.app[AI].prices.prices["gpt-4o"].price.input_per_mtok_micro == 3_500_000
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'price.update'") == 1


async def test_a_price_the_json_api_would_refuse_is_refused_here_too(as_admin, database):
    before = await database.fetch("SELECT * FROM model_prices ORDER BY model")
    for fields in ({"model": "bad model!", "input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1"},
                   {"model": "gpt-4o", "input_per_mtok": "-1", "output_per_mtok": "1", "cached_input_per_mtok": "1"},
                   {"model": "mystery", "input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "1"}):
        assert (await post(as_admin, "/admin/settings/prices", **fields)).status == 400, fields
    assert await database.fetch("SELECT * FROM model_prices ORDER BY model") == before


async def test_bundles_are_created_changed_and_deleted(as_admin, database):
    assert (await post(as_admin, "/admin/settings/bundles", name="Week pack", description="", token_count="2",
                       duration_hours="168", scope="full", price="150", is_active="true")).status == 303
    bundle = await database.fetchval("SELECT id FROM bundles WHERE name = 'Week pack'")
    assert (await post(as_admin, f"/admin/settings/bundles/{bundle}", name="Week pack", description="two weeks",
                       token_count="2", duration_hours="168", scope="full", price="140",
                       is_active="false")).status == 303
    row = await database.fetchrow("SELECT price_micro, is_active FROM bundles WHERE id = $1", bundle)
    assert tuple(row) == (140_000_000, False)
    assert (await post(as_admin, f"/admin/settings/bundles/{bundle}/delete")).status == 303
    assert await database.fetchval("SELECT deleted_at IS NOT NULL FROM bundles WHERE id = $1", bundle)
    actions = await database.fetch("SELECT action FROM audit_log WHERE target_type = 'bundle' ORDER BY id")
    assert [a["action"] for a in actions] == ["bundle.create", "bundle.update", "bundle.delete"]


async def test_the_page_shows_prices_token_prices_plans_and_bundles(as_admin):
    page = await (await as_admin.get("/admin/settings")).text()
    for text in ('id="prices"', "claude-haiku-4-5", 'id="token-prices"', "720", 'id="plans"', "enterprise",
                 "Day pack"):
        assert text in page, text
