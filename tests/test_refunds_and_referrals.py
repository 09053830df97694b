"""Refunds that never undercut the short tiers, and referral bonuses paid only on what a final
purchase kept (ATTACK-2026-12-01 M2, M3; decision 0014), all through HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

import ledger
from gateway.accounts import referral_bonuses
from gateway.core.config import DEFAULT_TOKEN_PRICES, Settings
from tests.conftest import deposit, register

PURCHASE = "/api/v1/tokens/purchase"
CREDIT = ledger.MICRO_PER_CREDIT
PRICES = Settings().token_prices


async def balance_of(database, user_id: int) -> int:
    return (await ledger.balance(database, user_id)).available_micro


async def buy(gateway, user: dict, hours: int) -> dict:
    response = await gateway.post(PURCHASE, headers=user["headers"], json={"duration_hours": hours})
    assert response.status == 201, await response.text()
    return await response.json()


async def buy_bundle(gateway, user: dict, name: str) -> dict:
    bundles = (await (await gateway.get("/api/v1/bundles")).json())["items"]
    bundle = next(b for b in bundles if b["name"] == name)
    response = await gateway.post(f"/api/v1/bundles/{bundle['id']}/purchase", headers=user["headers"])
    assert response.status == 201, await response.text()
    return await response.json()


async def use_for(database, token_id: int, used: dt.timedelta) -> None:
    """Stand-in for time of use, as the report does: the token was bought `used` ago."""
    await database.execute("UPDATE access_tokens SET created_at = created_at - $2::interval, "
                           "expires_at = expires_at - $2::interval WHERE id = $1", token_id, used)


async def revoke(gateway, user: dict, token_id: int) -> int:
    response = await gateway.delete(f"/api/v1/tokens/{token_id}", headers=user["headers"])
    assert response.status == 200, await response.text()
    return ledger.parse_credits((await response.json())["refund"])


@pytest.fixture
async def pair(gateway, database):
    """A referrer and the referee who registered with their code, the referee holding 300 credits."""
    referrer = await register(gateway, "referrer@example.com")
    referee = await register(gateway, "referee@example.com", referral_code=referrer["referral_code"])
    await deposit(database, referee["id"], 300)
    return referrer, referee


# -- M3: what used time costs --------------------------------------------------------------------

@pytest.mark.parametrize("used, charge_credits", [
    (dt.timedelta(minutes=59), 1),    # inside the first hour: the 1 h token's price
    (dt.timedelta(hours=1), 2),       # just past one hour: two 1 h tokens
    (dt.timedelta(hours=12), 11),     # just past 12 h: 12 h + 1 h
    (dt.timedelta(hours=23, minutes=30), 18),  # the 24 h token beats 12 h + 12 x 1 h
])
async def test_used_time_of_a_720h_token_costs_what_the_short_tokens_would_have(gateway, database, pair,
                                                                                 used, charge_credits):
    _, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, used)
    refund = await revoke(gateway, referee, token_id)
    assert 300 * CREDIT - refund == charge_credits * CREDIT


async def test_an_hour_of_a_month_token_never_costs_less_than_the_hour_token(gateway, database, pair):
    """The report's reproduction: 720 h bought, 1 h used, revoked (it cost 0.4167 credits)."""
    _, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, dt.timedelta(hours=1))
    charge = 300 * CREDIT - await revoke(gateway, referee, token_id)
    assert charge >= PRICES[1]
    row = await database.fetchrow("SELECT price_micro, refund_micro FROM access_tokens WHERE id = $1", token_id)
    assert row["price_micro"] - row["refund_micro"] == charge


async def test_twelve_hours_of_a_month_token_never_cost_less_than_the_12h_token(gateway, database, pair):
    _, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, dt.timedelta(hours=12))
    assert 300 * CREDIT - await revoke(gateway, referee, token_id) >= PRICES[12]


@pytest.mark.parametrize("used_hours", [0, 0.01, 5, 30, 167, 400, 719.9])
async def test_a_refund_is_never_above_the_price_nor_negative(gateway, database, pair, used_hours):
    _, referee = pair
    await deposit(database, referee["id"], 200)
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, dt.timedelta(hours=used_hours))
    refund = await revoke(gateway, referee, token_id)
    assert 0 <= refund < 300 * CREDIT
    assert await balance_of(database, referee["id"]) == 200 * CREDIT + refund
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'refund'") == (1 if refund else 0)


async def test_a_bundle_token_pays_the_short_tier_for_its_used_time_but_never_more_than_its_share(
        gateway, database, pair):
    _, referee = pair
    await deposit(database, referee["id"], 500)
    bought = await buy_bundle(gateway, referee, "Quarter")  # 3 x 720 h for 720: 240 a token
    first, second, third = (t["id"] for t in bought["tokens"])
    await use_for(database, first, dt.timedelta(minutes=30))
    await use_for(database, second, dt.timedelta(hours=200))
    assert await revoke(gateway, referee, first) == 239 * CREDIT           # the 1 h token's price kept
    assert await revoke(gateway, referee, second) == 113 * CREDIT  # 201 h cost 127: 168 h + 24 h + 9 x 1 h
    assert await revoke(gateway, referee, third) == 239 * CREDIT


def test_the_cheapest_cover_is_the_cheapest_set_of_tokens_lasting_that_long():
    from gateway.accounts.refunds import cheapest_cover_micro

    prices = {hours: ledger.parse_credits(price) for hours, price in DEFAULT_TOKEN_PRICES.items()}
    table = [(0, 0), (1, 1), (2, 2), (11, 10), (12, 10), (13, 11), (23, 18), (24, 18), (25, 19),
             (73, 55), (100, 76), (168, 100), (169, 101), (201, 127), (720, 300), (721, 301), (8784, 3700)]
    for hours, credits in table:
        assert cheapest_cover_micro(prices, hours) == credits * CREDIT, hours


def test_a_refund_is_the_price_less_the_larger_of_pro_rata_and_the_cheapest_cover():
    from gateway.accounts.refunds import refund_micro

    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(hours=720)
    price = 300 * CREDIT
    assert refund_micro(PRICES, price, start, end, start) == price  # never used, nothing charged
    assert refund_micro(PRICES, price, start, end, start + dt.timedelta(seconds=1)) == price - CREDIT
    assert refund_micro(PRICES, price, start, end, start + dt.timedelta(hours=700)) == 0  # cover 300 >= price
    assert refund_micro(PRICES, price, start, end, end) == 0
    assert refund_micro(PRICES, 0, start, end, start + dt.timedelta(hours=1)) == 0
    # A token dearer per hour than the tiers: pro rata of its own price is the larger charge.
    assert refund_micro(PRICES, 1000 * CREDIT, start, start + dt.timedelta(hours=10),
                        start + dt.timedelta(hours=5)) == 500 * CREDIT


# -- M2: the referral bonus is paid on what a final purchase kept ------------------------------

async def settle_referrals(database, clock, hours: int = 721) -> int:
    clock.advance(hours * 3600)
    return await referral_bonuses.pay_due(database, dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc))


async def test_a_refunded_purchase_leaves_the_referrer_only_the_bonus_on_what_was_paid(gateway, database, pair):
    """The report's reproduction: the referee buys 720 h and revokes at once; the referrer kept 30."""
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    assert await balance_of(database, referrer["id"]) == 0  # promised, not paid while refundable
    refund = await revoke(gateway, referee, token_id)
    paid = 300 * CREDIT - refund
    assert paid == CREDIT  # the first hour's price
    assert await balance_of(database, referrer["id"]) == paid // 10  # paid at the revoke that made it final
    promotions = await database.fetchrow("SELECT debits_posted, credits_posted FROM accounts WHERE code = 'promotions'")
    assert promotions["debits_posted"] - promotions["credits_posted"] == paid // 10
    reward = await database.fetchrow("SELECT amount_micro, paid_micro FROM referral_rewards")
    assert tuple(reward) == (30 * CREDIT, paid // 10)


async def test_a_partial_refund_keeps_only_the_proportional_bonus(gateway, database, pair):
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, dt.timedelta(hours=72))
    refund = await revoke(gateway, referee, token_id)
    assert refund == 245 * CREDIT  # 73 h cost 55: 3 x 24 h + 1 h
    assert await balance_of(database, referrer["id"]) == 30 * CREDIT * (300 - 245) // 300


async def test_a_bundles_bonus_is_paid_when_its_last_token_is_revoked_on_what_it_kept(gateway, database, pair):
    """The report's bundle variant (4 x 168 h for 340 paid 34)."""
    referrer, referee = pair
    await deposit(database, referee["id"], 100)
    bought = await buy_bundle(gateway, referee, "Month of weeks")
    refunds = []
    for token in bought["tokens"]:
        assert await balance_of(database, referrer["id"]) == 0  # not final while a token is live
        refunds.append(await revoke(gateway, referee, token["id"]))
    paid = 340 * CREDIT - sum(refunds)
    assert paid == 4 * CREDIT
    assert await balance_of(database, referrer["id"]) == 34 * CREDIT * paid // (340 * CREDIT)


async def test_a_purchase_used_to_its_end_pays_the_whole_bonus_through_the_sweep(gateway, database, pair, clock):
    referrer, referee = pair
    await buy(gateway, referee, 720)
    assert await settle_referrals(database, clock, hours=719) == 0  # still live
    assert await balance_of(database, referrer["id"]) == 0
    assert await settle_referrals(database, clock, hours=2) == 1
    assert await balance_of(database, referrer["id"]) == 30 * CREDIT
    assert await settle_referrals(database, clock) == 0  # once
    assert await balance_of(database, referrer["id"]) == 30 * CREDIT


async def test_concurrent_revokes_pay_the_bonus_once(gateway, database, pair):
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    responses = await asyncio.gather(*(gateway.delete(f"/api/v1/tokens/{token_id}", headers=referee["headers"])
                                       for _ in range(10)))
    assert sorted(r.status for r in responses) == [200] + [409] * 9
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'referral_bonus'") == 1
    assert await balance_of(database, referrer["id"]) == CREDIT // 10


async def test_concurrent_revokes_of_a_bundles_tokens_and_the_sweep_pay_the_bonus_once(
        gateway, database, pair, clock):
    referrer, referee = pair
    await deposit(database, referee["id"], 100)
    bought = await buy_bundle(gateway, referee, "Month of weeks")
    responses = await asyncio.gather(*(gateway.delete(f"/api/v1/tokens/{t['id']}", headers=referee["headers"])
                                       for t in bought["tokens"]), settle_referrals(database, clock, hours=0))
    assert [r.status for r in responses[:4]] == [200] * 4
    reward = await database.fetchrow("SELECT amount_micro, paid_micro FROM referral_rewards")
    assert reward["paid_micro"] == 34 * CREDIT * 4 // 340
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'referral_bonus'") == 1
    assert await balance_of(database, referrer["id"]) == reward["paid_micro"]


async def test_the_referrals_page_shows_the_bonus_pending_then_paid(gateway, database, pair):
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    mine = await (await gateway.get("/api/v1/users/me/referrals", headers=referrer["headers"])).json()
    assert (mine["total_earned"], mine["total_pending"]) == ("0", "30")
    assert (mine["referred_users"][0]["bonus"], mine["referred_users"][0]["pending_bonus"]) == (None, "30")
    await revoke(gateway, referee, token_id)
    mine = await (await gateway.get("/api/v1/users/me/referrals", headers=referrer["headers"])).json()
    assert (mine["total_earned"], mine["total_pending"]) == ("0.1", "0")
    assert mine["referred_users"][0]["bonus"] == "0.1"


async def test_an_admin_force_revoke_refunds_nothing_so_the_whole_bonus_is_paid(gateway, database, pair, clock):
    from gateway.accounts import users

    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await users.ensure_admin(database, email="root@example.com", password="admin password 1")
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "admin password 1"})
    admin = {"Authorization": "Bearer " + (await login.json())["access_token"]}
    assert (await gateway.post(f"/api/v1/admin/tokens/{token_id}/revoke", headers=admin)).status == 200
    assert await settle_referrals(database, clock, hours=0) == 1
    assert await balance_of(database, referrer["id"]) == 30 * CREDIT


async def test_a_bonus_cannot_be_parked_in_refundable_tokens_and_kept(gateway, database, pair):
    """Review of M2: under the take-back rule a referrer parked the bonus in their own tokens before the
    referee's refund, then refunded them: +25 credits per 300. A bonus paid only on a final purchase
    leaves nothing to park."""
    referrer, referee = pair
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    assert await balance_of(database, referrer["id"]) == 0  # nothing to park
    await revoke(gateway, referee, token_id)
    # 300 credits came in; the referee paid 1 for the hour: at most 300 - 1 + 0.1 may exist between the two.
    together = await balance_of(database, referrer["id"]) + await balance_of(database, referee["id"])
    assert together == 300 * CREDIT - CREDIT + CREDIT // 10
