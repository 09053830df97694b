"""Refunds of revoked tokens: used time never costs less than the short tiers (ATTACK-2026-12-01 M3)."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

import ledger
from gateway.core.config import Settings
from gateway.core.plan_settings import DEFAULT_TOKEN_PRICES
from tests.support.accounts import balance_of, deposit, register
from tests.support.purchases import CREDIT, buy, buy_bundle, revoke, use_for

PRICES = Settings().token_prices


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


async def test_refund_rounding_is_down_to_the_micro_credit():
    from gateway.core.config import Settings
    from gateway.accounts.refunds import refund_micro

    prices = {1: 1}  # only a 1 h token: the cover of n hours is n micro-credits, below pro rata here
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(hours=3)
    assert refund_micro(prices, 1_000_000, start, end, start + dt.timedelta(hours=1)) == 666_666
    assert refund_micro(prices, 1_000_000, start, end, start) == 1_000_000
    assert refund_micro(prices, 1_000_000, start, end, end) == 0
    assert refund_micro(prices, 1_000_000, start, end, end + dt.timedelta(days=1)) == 0
    assert refund_micro(prices, 1_000_000, start, end, start - dt.timedelta(days=1)) == 1_000_000
    assert refund_micro(Settings().token_prices, 0, start, end, start) == 0


# -- the revoke's locks beside the ledger's batches (review of decision 0021, "Lanes") -----------

async def _referral_pair_in_one_lane(gateway, database) -> tuple[dict, dict]:
    """A referrer (10 credits) and a referee (300) whose ids fall in the same of two lanes and on
    revenue shards other than `revenue`, the referrer's account the older (locked first by id)."""
    referrer = await register(gateway, "lane-referrer-0@example.com")
    for number in range(1, 4):
        if referrer["id"] % 4:
            break
        referrer = await register(gateway, f"lane-referrer-{number}@example.com")
    await deposit(database, referrer["id"], 10)  # its account first, and funds for its own hold
    for number in range(4):
        referee = await register(gateway, f"lane-referee-{number}@example.com", referral_code=referrer["referral_code"])
        if referee["id"] % 2 == referrer["id"] % 2 and referee["id"] % 4:
            await deposit(database, referee["id"], 300)
            return referrer, referee
    raise AssertionError("four consecutive ids hold one of each parity off shard 0")


async def _lock_waits(database, count: int) -> None:
    for _ in range(500):
        if await database.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} lock waits never showed")


async def test_a_revoke_paying_a_referral_bonus_never_waits_in_a_cycle_with_a_ledger_batch(gateway, database,
                                                                                          servers):
    """The revoke refunds (revenue -> referee) and then pays the referrer's bonus (promotions ->
    referrer). Holds of both in one ledger batch lock referrer then referee, in id order. Had the
    revoke taken the referrer's account only when paying the bonus, each would hold what the other
    waits for (PostgreSQL then aborts the batch, which goes again item by item); it locks all four
    accounts up front, in id order, so the batch just waits."""
    referrer, referee = await _referral_pair_in_one_lane(gateway, database)
    token_id = (await buy(gateway, referee, 720))["tokens"][0]["id"]
    await use_for(database, token_id, dt.timedelta(hours=12))  # the purchase keeps something: a bonus is paid
    purchase = await database.fetchval("SELECT purchase_transfer_id FROM access_tokens WHERE id = $1", token_id)
    pool = await asyncpg.create_pool(servers.database_url, min_size=2, max_size=4)
    batcher = ledger.Batcher(pool, lanes=2)

    now = dt.datetime.now(dt.timezone.utc)
    sides = [(user["id"], await ledger.user_account(database, user["id"]),
              await ledger.system_id(database, ledger.revenue_shard(user["id"]))) for user in (referrer, referee)]

    def hold(user_id: int, account: int, shard: int):  # queued at once: both in one batch of their lane
        return batcher.move(key=f"ai:lane-{user_id}:hold", debit=account, credit=shard, amount_micro=CREDIT,
                            kind="usage", now=now, user_id=user_id, hold_until=now + dt.timedelta(hours=1))

    try:
        async with database.acquire() as blocker, blocker.transaction():
            # The revoke stops at the bonus (its reward row held here), after its refund.
            await blocker.execute("SELECT 1 FROM referral_rewards WHERE purchase_transfer_id = $1 FOR UPDATE", purchase)
            revoking = asyncio.ensure_future(gateway.delete(f"/api/v1/tokens/{token_id}", headers=referee["headers"]))
            await _lock_waits(database, 1)
            holds = asyncio.ensure_future(asyncio.gather(*(hold(*side) for side in sides)))
            await _lock_waits(database, 2)
        response = await asyncio.wait_for(revoking, 10)
        held = await asyncio.wait_for(holds, 10)
    finally:
        await batcher.close()
        await pool.close()
    assert response.status == 200, await response.text()
    assert (batcher.batches, len(held)) == (1, 2)  # one batch, never aborted and sent again item by item
    bonus = await database.fetchval("SELECT amount_micro FROM transfers WHERE kind = 'referral_bonus' AND user_id = $1",
                                    referrer["id"])
    assert bonus > 0
    assert (await ledger.reconcile(database)).ok
