"""/api/v1/currency: balance and transactions; the admin's top-up / adjustment of a user's credits."""

from __future__ import annotations

import datetime as dt

import asyncpg
from aiohttp import web

import ledger
from gateway.accounts import audit
from gateway.accounts import users
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.api.tokens import idempotency_key, page
from gateway.api.web_auth import current_user, now, require_admin

SELECT_TRANSACTIONS = """
SELECT t.id, t.kind, t.phase, t.amount_micro, t.debit_account_id, t.description, t.created_at,
       t.pending_id, t.expires_at
FROM transfers t
WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND ($2::text IS NULL OR t.kind = $2)
ORDER BY t.id DESC LIMIT $3 OFFSET $4"""
COUNT_TRANSACTIONS = """
SELECT count(*) FROM transfers t
WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND ($2::text IS NULL OR t.kind = $2)"""
REASON_MAX = 500


def balance_json(balance: ledger.Balance) -> dict:
    return {"balance": ledger.format_micro(balance.available_micro),
            "posted": ledger.format_micro(balance.posted_micro),
            "held": ledger.format_micro(balance.held_micro),
            "overdraft_limit": ledger.format_micro(balance.overdraft_micro),
            # What a refund could not take back (decision 0017): spending waits until money repays it.
            "owed": ledger.format_micro(balance.owed_micro), "currency": "credits"}


async def balance(request: web.Request) -> web.Response:
    request[CALL].route = "currency"
    user = await current_user(request)
    return json_response(balance_json(await ledger.balance(request.app[DATABASE], user.id)))


def _signed(row: asyncpg.Record, account_id: int) -> int:
    """The transfer as the user sees it: + into their account, - out of it; holds and voids move 0."""
    amount = row["amount_micro"] if row["phase"] in ("posted", "post_pending") else 0
    return -amount if row["debit_account_id"] == account_id else amount


async def transactions(request: web.Request) -> web.Response:
    request[CALL].route = "currency"
    user = await current_user(request)
    skip, limit = page(request)
    kind = request.query.get("type") or None
    if kind is not None and kind not in ledger.KINDS:
        raise BadRequest(f"type must be one of {', '.join(ledger.KINDS)}", code="invalid_query")
    database = request.app[DATABASE]
    account = (await ledger.balance(database, user.id)).account_id
    if account is None:
        return json_response({"items": [], "total": 0, "skip": skip, "limit": limit})
    rows = await database.fetch(SELECT_TRANSACTIONS, account, kind, limit, skip)
    total = await database.fetchval(COUNT_TRANSACTIONS, account, kind)
    return json_response({"items": [{
        "id": r["id"], "type": r["kind"], "phase": r["phase"],
        "amount": ledger.format_micro(_signed(r, account)),
        "held": ledger.format_micro(r["amount_micro"]) if r["phase"] == "pending" else None,
        "hold_id": r["pending_id"], "description": r["description"],
        "created_at": r["created_at"].isoformat()} for r in rows],
        "total": total, "skip": skip, "limit": limit})


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


async def admin_adjust(request: web.Request) -> web.Response:
    """POST /api/v1/admin/users/{id}/adjust {"credits": "-2.5", "reason": "..."}"""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    key = idempotency_key(request)
    user_id = database_id(request.match_info["user_id"])
    database = request.app[DATABASE]
    user = await users.by_id(database, user_id) if user_id is not None else None
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    amount, reason = parse_adjustment(await read_object(request))
    transfer = await adjust_credits(database, user_id=user.id, amount_micro=amount, reason=reason, key=key,
                                    actor_id=admin.id, now=now(request), ip=request[CALL].client_ip)
    after = await ledger.balance(database, user.id)
    return json_response({"transfer_id": transfer.id, "user_id": user.id, "replayed": transfer.replayed,
                          "credits": ledger.format_micro(amount), **balance_json(after)},
                         status=200 if transfer.replayed else 201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/currency/balance", balance)
    app.router.add_get("/api/v1/currency/transactions", transactions)
    app.router.add_post("/api/v1/admin/users/{user_id}/adjust", admin_adjust)
