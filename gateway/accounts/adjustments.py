"""Staff adjustments of a user's credits: a top-up (+) or deduction (-) against the adjustments
account, with a reason, an idempotency key and an audit entry — for the JSON API, the CLI and the
admin UI alike."""

from __future__ import annotations

import datetime as dt

import asyncpg

import ledger
from gateway.accounts import audit
from gateway.core.errors import BadRequest
from gateway.core.json_body import field

REASON_MAX = 500


async def adjust_credits(pool: asyncpg.Pool, *, user_id: int, amount_micro: int, reason: str, key: str,
                         actor_id: int | None, now: dt.datetime, ip: str = "") -> ledger.Transfer:
    """Admin top-up (+) or deduction (-) against the adjustments account, audited, in one transaction."""
    async with pool.acquire() as connection, connection.transaction():
        account = await ledger.user_account(connection, user_id)
        adjustments = await ledger.system_id(connection, "adjustments")
        debit, credit = (adjustments, account) if amount_micro > 0 else (account, adjustments)
        transfer = await ledger.move(
            connection, key=f"adjust:{user_id}:{key}", debit=debit, credit=credit,
            amount_micro=abs(amount_micro), kind="adjustment", now=now, user_id=user_id,
            description=reason, metadata={"reason": reason, "actor_id": actor_id})
        if not transfer.replayed:
            await audit.record(connection, actor_id=actor_id, action="credits.adjust", target_type="user",
                               target_id=user_id, ip=ip, details={"amount_micro": amount_micro,
                                                                  "reason": reason, "transfer_id": transfer.id})
        return transfer


def parse_adjustment(body: dict) -> tuple[int, str]:
    """(amount in micro-credits, reason) from {"credits": "-2.5", "reason": "..."}; 400 otherwise."""
    try:
        amount = ledger.parse_credits(field(body, "credits", str), allow_negative=True)
    except ledger.MoneyError as error:
        raise BadRequest(str(error), code="invalid_amount") from error
    if amount == 0:
        raise BadRequest("credits must not be zero", code="invalid_amount")
    reason = field(body, "reason", str).strip()
    if not 0 < len(reason) <= REASON_MAX:
        raise BadRequest(f"reason: 1-{REASON_MAX} characters", code="invalid_reason")
    return amount, reason
