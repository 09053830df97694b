"""Referral bonuses: promised at the referred user's first qualifying purchase, paid once that
purchase is final — every token it bought revoked or expired — at the bonus percentage of what
the purchase kept after refunds (decision 0014). Nothing paid is ever taken back, so nothing can
be parked out of a take-back's reach; a purchase is final at its last revoke (paid in that same
transaction) or when its last token expires (paid by the sweep).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

import ledger
from gateway.accounts import audit
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

SELECT_REFERRER = "SELECT referred_by FROM users WHERE id = $1"
PROMISE = """
INSERT INTO referral_rewards (referred_user_id, referrer_id, purchase_transfer_id, amount_micro, created_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (referred_user_id) DO NOTHING RETURNING id"""
UNPAID_REFERRER = "SELECT referrer_id FROM referral_rewards WHERE purchase_transfer_id = $1 AND paid_at IS NULL"
LOCK_UNPAID = """
SELECT id, referred_user_id, referrer_id, purchase_transfer_id, amount_micro FROM referral_rewards
WHERE purchase_transfer_id = $1 AND paid_at IS NULL FOR UPDATE"""
# Final: no token of the purchase is still live. Its price and refunds give what it kept.
PURCHASE_STATE = """
SELECT sum(price_micro)::bigint AS price, COALESCE(sum(refund_micro), 0)::bigint AS refunded,
       count(*) FILTER (WHERE revoked_at IS NULL AND expires_at > $2) AS live
FROM access_tokens WHERE purchase_transfer_id = $1"""
RECORD_PAYMENT = "UPDATE referral_rewards SET bonus_transfer_id = $2, paid_micro = $3, paid_at = $4 WHERE id = $1"
# Unpaid rewards whose purchase has no live token left: the sweep's work (the rest wait).
DUE = """
SELECT r.purchase_transfer_id FROM referral_rewards r
WHERE r.paid_at IS NULL AND NOT EXISTS (
    SELECT 1 FROM access_tokens t WHERE t.purchase_transfer_id = r.purchase_transfer_id
    AND t.revoked_at IS NULL AND t.expires_at > $1)
ORDER BY r.id LIMIT $2"""
SWEEP_BATCH_MAX = 200


async def promise(connection: asyncpg.Connection, settings: Settings, *, user_id: int,
                  purchase: ledger.Transfer, now: dt.datetime) -> int:
    """In the purchase's transaction: promise the referrer a bonus for the referred user's first
    purchase above the threshold (once per referred user). Returns the bonus promised."""
    threshold = settings.referral_min_purchase_credits * ledger.MICRO_PER_CREDIT
    if purchase.amount_micro <= threshold or settings.referral_bonus_percent == 0:
        return 0
    referrer = await connection.fetchval(SELECT_REFERRER, user_id)
    if referrer is None:
        return 0
    bonus = purchase.amount_micro * settings.referral_bonus_percent // 100
    # The unique referred user makes a concurrent qualifying purchase promise nothing more.
    if await connection.fetchval(PROMISE, user_id, referrer, purchase.id, bonus, now) is None:
        return 0
    await audit.record(connection, actor_id=None, action="referral.promised", target_type="user",
                       target_id=referrer, details={"referred_user_id": user_id, "amount_micro": bonus,
                                                    "purchase": purchase.id})
    return bonus


async def unpaid_referrer(connection: asyncpg.Connection, purchase_id: int) -> int | None:
    """The user a bonus of this purchase is still promised to, if any (whose account pay_if_final credits)."""
    return await connection.fetchval(UNPAID_REFERRER, purchase_id)


async def pay_if_final(connection: asyncpg.Connection, *, purchase_id: int, now: dt.datetime) -> bool:
    """In the caller's transaction: pay the purchase's promised bonus if the purchase is final.
    True when this call settled it (paying what the purchase kept, possibly nothing)."""
    reward = await connection.fetchrow(LOCK_UNPAID, purchase_id)
    if reward is None:
        return False  # no promise, or already paid
    state = await connection.fetchrow(PURCHASE_STATE, purchase_id, now)
    if state["live"] or not state["price"]:
        return False
    kept = state["price"] - state["refunded"]
    paid = reward["amount_micro"] * kept // state["price"]
    transfer_id = None
    if paid > 0:
        transfer = await ledger.move(
            connection, key=f"referral:{reward['referred_user_id']}",
            debit=await ledger.system_id(connection, "promotions"),
            credit=await ledger.user_account(connection, reward["referrer_id"]), amount_micro=paid,
            kind="referral_bonus", now=now, user_id=reward["referrer_id"], description="referral bonus",
            metadata={"referred_user_id": reward["referred_user_id"], "purchase": purchase_id})
        transfer_id = transfer.id
    await connection.execute(RECORD_PAYMENT, reward["id"], transfer_id, paid, now)
    await audit.record(connection, actor_id=None, action="referral.bonus", target_type="user",
                       target_id=reward["referrer_id"],
                       details={"referred_user_id": reward["referred_user_id"], "promised_micro":
                                reward["amount_micro"], "amount_micro": paid, "transfer_id": transfer_id})
    return True


async def pay_due(pool: asyncpg.Pool, now: dt.datetime) -> int:
    """The sweep: pay the bonuses of purchases whose last token has expired. Returns how many."""
    settled = 0
    for row in await pool.fetch(DUE, now, SWEEP_BATCH_MAX):
        async with pool.acquire() as connection, connection.transaction():
            settled += await pay_if_final(connection, purchase_id=row["purchase_transfer_id"], now=now)
    return settled


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float) -> None:
    """Background task of every worker (a reward is settled once whoever gets there first)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            settled = await pay_due(pool, dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc))
            if settled:
                log.info("settled %d referral bonus(es)", settled)
        except POSTGRES_FAILURES as error:
            log.warning("referral bonus sweep failed: %s", type(error).__name__)
