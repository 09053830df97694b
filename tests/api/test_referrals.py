"""/api/v1/users/me/referrals: the referrer's page."""

from __future__ import annotations

from tests.support.purchases import buy, revoke


async def test_the_referrals_page_shows_the_bonus_pending_then_paid(gateway, database, pair):
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    mine = await (await gateway.get("/api/v1/users/me/referrals", headers=referrer["headers"])).json()
    assert (mine["total_bonus_earned"], mine["total_pending"]) == ("0", "30")
    assert (mine["referred_users"][0]["bonus"], mine["referred_users"][0]["pending_bonus"]) == (None, "30")
    await revoke(gateway, referee, token_id)
    mine = await (await gateway.get("/api/v1/users/me/referrals", headers=referrer["headers"])).json()
    assert (mine["total_bonus_earned"], mine["total_pending"]) == ("0.1", "0")
    assert mine["referred_users"][0]["bonus"] == "0.1"


async def test_the_referrals_page_answers_the_seeds_field_names(gateway, database, pair):
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await revoke(gateway, referee, token_id)
    mine = await (await gateway.get("/api/v1/users/me/referrals", headers=referrer["headers"])).json()
    assert (mine["total_referrals"], mine["qualifying_referrals"], mine["total_bonus_earned"]) == (1, 1, "0.1")
    assert [user["username"] for user in mine["referred_users"]] == [referee["username"]]
