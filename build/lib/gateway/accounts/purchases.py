"""Buying access tokens with credits, and promising the referral bonus (paid: gateway.accounts.referral_bonuses).

Every function here is one PostgreSQL transaction: the transfer, the tokens it pays for, the
referral reward and the audit entry commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.accounts import audit
from gateway.accounts import referral_bonuses
from gateway.accounts import access_tokens
from gateway.core.config import Settings

SELECT_PAID_TOKENS = """
SELECT id, scope, expires_at FROM access_tokens WHERE purchase_transfer_id = $1 ORDER BY id"""
MARK_PURCHASE = """
UPDATE access_tokens SET duration_hours = $2, price_micro = $3, purchase_transfer_id = $4, bundle_id = $5
WHERE id = $1"""


@dataclass(frozen=True, slots=True)
class BoughtToken:
    id: int
    token: str | None  # the plaintext, only in the response that created it
    scope: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Purchase:
    transfer_id: int
    price_micro: int
    tokens: list[BoughtToken]
    replayed: bool
    referral_bonus_micro: int = 0


def price_shares(price_micro: int, count: int) -> list[int]:
    """Split a price over `count` tokens to the micro-credit; the shares sum to the price exactly."""
    base, remainder = divmod(price_micro, count)
    return [base + (1 if i < remainder else 0) for i in range(count)]


async def buy_tokens(pool: asyncpg.Pool, settings: Settings, *, user_id: int, key: str,
                     duration_hours: int, scope: str, price_micro: int, now: dt.datetime,
                     count: int = 1, bundle_id: int | None = None, ip: str = "") -> Purchase:
    """Charge the user and issue `count` tokens. Same key + same purchase returns the original
    (without plaintexts, which were shown once); same key + another purchase is a 409."""
    async with pool.acquire() as connection, connection.transaction():
        account = await ledger.user_account(connection, user_id)
        revenue = await ledger.system_id(connection, "revenue")
        transfer = await ledger.move(
            connection, key=f"purchase:{user_id}:{key}", debit=account, credit=revenue,
            amount_micro=price_micro, kind="purchase", now=now, user_id=user_id,
            description=f"{count} x {duration_hours} h access token" + ("s" if count > 1 else ""),
            metadata={"duration_hours": duration_hours, "scope": scope, "count": count,
                      "bundle_id": bundle_id})
        if transfer.replayed:
            rows = await connection.fetch(SELECT_PAID_TOKENS, transfer.id)
            return Purchase(transfer.id, price_micro,
                            [BoughtToken(r["id"], None, r["scope"], r["expires_at"]) for r in rows], True)
        bought = []
        for share in price_shares(price_micro, count):
            issued = await access_tokens.issue(connection, user_id=user_id, hours=duration_hours, scope=scope, now=now)
            await connection.execute(MARK_PURCHASE, issued.id, duration_hours, share, transfer.id, bundle_id)
            bought.append(BoughtToken(issued.id, issued.token, issued.scope, issued.expires_at))
        bonus = await referral_bonuses.promise(connection, settings, user_id=user_id, purchase=transfer, now=now)
        await audit.record(connection, actor_id=user_id, action="token.purchase", target_type="transfer",
                           target_id=transfer.id, ip=ip,
                           details={"price_micro": price_micro, "count": count, "bundle_id": bundle_id,
                                    "duration_hours": duration_hours, "scope": scope,
                                    "token_ids": [t.id for t in bought]})
        return Purchase(transfer.id, price_micro, bought, False, bonus)
