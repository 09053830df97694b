"""Revoking a bought token: the refund of its unused time (and the referral bonus its purchase
may then have earned, gateway.accounts.referral_bonuses).

The refund rule (decision 0014): the used time costs the larger of its pro-rata share of the price
and the cheapest set of sold tokens that would have lasted as long, so buying long and revoking is
never cheaper than buying short. A revoke is one PostgreSQL transaction: the refund, the token row,
the referral bonus and the audit entries commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.accounts import audit
from gateway.accounts import referral_bonuses
from gateway.core.config import Settings
from gateway.core.errors import Conflict, NotFound

LOCK_OWN_TOKEN = """
SELECT id, user_id, token_hash, created_at, expires_at, revoked_at, price_micro, purchase_transfer_id
FROM access_tokens WHERE id = $1 AND user_id = $2 FOR UPDATE"""
REVOKE_WITH_REFUND = """
UPDATE access_tokens SET revoked_at = $2, refund_micro = $3, revoked_by = $4 WHERE id = $1"""
# Refunds are computed up to the longest lifetime a token can have (admin tokens and bundles: 366 days).
COVER_HOURS_MAX = 24 * 366
MICROSECONDS_PER_HOUR = 3_600_000_000


@functools.lru_cache(maxsize=8)
def _cover_table(prices: tuple[tuple[int, int], ...], hours_max: int) -> tuple[int, ...]:
    """Cheapest price of a set of tokens lasting at least h hours, for every h up to hours_max."""
    table = [0] * (hours_max + 1)
    for hours in range(1, hours_max + 1):
        table[hours] = min(price + table[max(0, hours - tier)] for tier, price in prices)
    return tuple(table)


def cheapest_cover_micro(prices: Mapping[int, int], hours: int) -> int:
    """What buying tokens for `hours` hours would have cost at best (any mix of the sold durations)."""
    assert hours >= 0, hours
    return _cover_table(tuple(sorted(prices.items())), max(hours, COVER_HOURS_MAX))[hours]


def refund_micro(prices: Mapping[int, int], price_micro: int, created_at: dt.datetime,
                 expires_at: dt.datetime, now: dt.datetime) -> int:
    """What a revoke gives back: the price less what the used time costs, within 0..price.

    The used time costs the larger of its share of this token's price (pro rata to the microsecond)
    and the cheapest set of tokens that would have covered it (whole hours, rounded up), so buying
    long and revoking is never cheaper than buying short (decision 0014). Rounded down.
    """
    lifetime_us = _microseconds(expires_at - created_at)
    if lifetime_us <= 0 or price_micro <= 0:
        return 0
    used_us = min(max(_microseconds(now - created_at), 0), lifetime_us)
    pro_rata_micro = price_micro * (lifetime_us - used_us) // lifetime_us
    used_hours = -(-used_us // MICROSECONDS_PER_HOUR)
    return max(0, min(pro_rata_micro, price_micro - cheapest_cover_micro(prices, used_hours)))


def _microseconds(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def _lock_every_account(connection: asyncpg.Connection, accounts: list[int], purchase_id: int | None) -> None:
    """The refund's accounts and, when the revoke may pay a referral bonus, the referrer's and
    `promotions`, locked at once in id order (as every ledger function and ledger_batch lock theirs).
    Taking the referrer's later, after the user's, could wait in a cycle with a ledger batch that
    locks both in id order (review of decision 0021, "Lanes")."""
    if purchase_id is not None and (referrer := await referral_bonuses.unpaid_referrer(connection, purchase_id)):
        accounts = [*accounts, await ledger.system_id(connection, "promotions"),
                    await ledger.user_account(connection, referrer)]
    await ledger.lock_available(connection, accounts)


@dataclass(frozen=True, slots=True)
class Revoked:
    token_id: int
    token_hash: bytes
    refund_micro: int
    refund_transfer_id: int | None


async def revoke_with_refund(pool: asyncpg.Pool, settings: Settings, *, user_id: int, token_id: int,
                             now: dt.datetime, ip: str = "") -> Revoked:
    """The owner revokes a token: the unused time goes back to their balance, once."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(LOCK_OWN_TOKEN, token_id, user_id)
        if row is None:
            raise NotFound("no such token", code="token_not_found")
        if row["revoked_at"] is not None:
            raise Conflict("token already revoked", code="token_revoked")
        if row["expires_at"] <= now:
            raise Conflict("token already expired", code="token_expired")
        refund = refund_micro(settings.token_prices, row["price_micro"], row["created_at"],
                              row["expires_at"], now)
        revenue, account = await ledger.system_id(connection, "revenue"), await ledger.user_account(connection, user_id)
        await _lock_every_account(connection, [revenue, account], row["purchase_transfer_id"])
        transfer_id = None
        if refund > 0:
            transfer = await ledger.move(
                connection, key=f"refund:token:{token_id}", debit=revenue,
                credit=account, amount_micro=refund, kind="refund",
                now=now, user_id=user_id, description="unused time of a revoked token",
                metadata={"token_id": token_id})
            transfer_id = transfer.id
        await connection.execute(REVOKE_WITH_REFUND, token_id, now, refund, user_id)
        if row["purchase_transfer_id"] is not None:
            # The purchase's last live token ended: its referral bonus is due now (on what it kept).
            await referral_bonuses.pay_if_final(connection, purchase_id=row["purchase_transfer_id"], now=now)
        await audit.record(connection, actor_id=user_id, action="token.revoke", target_type="access_token",
                           target_id=token_id, ip=ip, details={"refund_micro": refund,
                                                               "transfer_id": transfer_id})
        return Revoked(token_id, bytes(row["token_hash"]), refund, transfer_id)
