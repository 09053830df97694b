"""Buying access tokens: never oversold under concurrency, bundle price shares, lock order with referral bonuses."""

from __future__ import annotations

import asyncio

import asyncpg

import ledger
from gateway.accounts import purchases, users
from tests.support.accounts import balance_of, deposit, register
from tests.support.api import error_code
from tests.support.gateways import make_settings
from tests.support.ledger import NOW, PRICE_MICRO, new_account
from tests.support.purchases import PURCHASE

# Lock order inside a caller's transaction: purchase + referral bonus


async def test_referred_purchases_and_the_referrers_own_purchases_never_deadlock(servers, database):
    """A qualifying purchase locks revenue and the buyer and promises the referrer a bonus (paid
    when the purchase is final); the referrer's own purchases queue behind it, never deadlock."""
    settings = make_settings(servers, "http://127.0.0.1:1", 1)
    referrer = await users.ensure_client(database, email="referrer@example.com")
    await new_account(database, "referrer", deposit_micro=1000 * PRICE_MICRO)
    friends = []
    for number in range(8):
        friend = await users.create(database, email=f"friend{number}@example.com", password=None,
                                    referred_by=referrer)
        await new_account(database, f"friend{number}", deposit_micro=300 * PRICE_MICRO)
        friends.append(friend)
    wide = await asyncpg.create_pool(servers.database_url, min_size=16, max_size=16)
    try:
        def buy(user_id: int, key: str, price_credits: int):
            return purchases.buy_tokens(wide, settings, user_id=user_id, key=key, duration_hours=720,
                                        scope="full", price_micro=price_credits * PRICE_MICRO, now=NOW)

        outcomes = await asyncio.gather(
            *(buy(friend, "month", 300) for friend in friends),
            *(buy(referrer, f"own-{number}", 1) for number in range(16)), return_exceptions=True)
    finally:
        await wide.close()
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert sorted(o.referral_bonus_micro for o in outcomes[:8]) == [30 * PRICE_MICRO] * 8  # promised
    referrer_balance = await ledger.balance(database, referrer)
    assert referrer_balance.posted_micro == (1000 - 16) * PRICE_MICRO  # paid once the purchases are final


async def test_100_concurrent_purchases_against_a_balance_for_10_sell_exactly_10(gateway_factory, database):
    # Generous store timeouts: on a loaded 2-core box a queue of 100 lock waits must not turn into
    # 503s, which would be correct answers but not the ones this test is about.
    gateway = await gateway_factory(redis_timeout_s=10.0, database_timeout_s=120.0)
    user = await register(gateway, "rush@example.com")
    await deposit(database, user["id"], 10)  # ten 1-hour tokens at 1 credit
    responses = await asyncio.gather(*(
        gateway.post(PURCHASE, headers=user["headers"], json={"duration_hours": 1}) for _ in range(100)))
    statuses = sorted(r.status for r in responses)
    bodies = [await r.text() for r in responses if r.status not in (201, 402)]
    assert statuses.count(201) == 10 and statuses.count(402) == 90, (statuses, bodies[:3])
    for response in responses:
        if response.status == 402:
            assert await error_code(response) == "insufficient_balance"
    assert await balance_of(database, user["id"]) == 0
    assert await database.fetchval("SELECT count(*) FROM access_tokens WHERE user_id = $1", user["id"]) == 10
    assert (await ledger.reconcile(database)).ok


async def test_an_odd_bundle_price_splits_to_the_micro_credit(gateway, database):
    from gateway.accounts.purchases import price_shares

    assert price_shares(10_000_001, 3) == [3_333_334, 3_333_334, 3_333_333]
    assert sum(price_shares(7, 100)) == 7
