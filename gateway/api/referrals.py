"""GET /api/v1/users/me/referrals: the user's code, share link, totals and the users they referred."""

from __future__ import annotations

from aiohttp import web

import ledger
from gateway.core.json_body import json_response
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only
from gateway.api.web_auth import current_user

SELECT_REFERRED = """
SELECT u.id, u.username, u.created_at, r.created_at AS rewarded_at, r.paid_at,
       -- Promised at the qualifying purchase; paid once it is final, on what it kept (0014).
       r.amount_micro AS promised_micro, r.paid_micro AS bonus_micro
FROM users u LEFT JOIN referral_rewards r ON r.referred_user_id = u.id
WHERE u.referred_by = $1 ORDER BY u.id"""


async def my_referrals(request: web.Request) -> web.Response:
    request[CALL].route = "users"
    user = await current_user(request)
    allow_only(request)
    rows = await request.app[DATABASE].fetch(SELECT_REFERRED, user.id)
    settings = request.app[SETTINGS]
    earned = sum(r["bonus_micro"] or 0 for r in rows)
    pending = sum(r["promised_micro"] for r in rows if r["rewarded_at"] and r["paid_at"] is None)
    return json_response({
        "referral_code": user.referral_code,
        "referral_link": f"{settings.public_url.rstrip('/')}/register?ref={user.referral_code}",
        "bonus_percent": settings.referral_bonus_percent,
        "min_purchase": str(settings.referral_min_purchase_credits),
        # The seed's field names: everyone referred, those whose purchase qualified for a bonus,
        # and the bonuses paid so far.
        "total_referrals": len(rows),
        "qualifying_referrals": sum(1 for r in rows if r["rewarded_at"]),
        "total_bonus_earned": ledger.format_micro(earned),
        # Promised for purchases that can still be refunded: paid when they are final.
        "total_pending": ledger.format_micro(pending),
        # Referred users by username only: their emails are theirs.
        "referred_users": [{"id": r["id"], "username": r["username"], "joined_at": r["created_at"].isoformat(),
                            "bonus": ledger.format_micro(r["bonus_micro"]) if r["paid_at"] else None,
                            "pending_bonus": ledger.format_micro(r["promised_micro"])
                            if r["rewarded_at"] and r["paid_at"] is None else None,
                            "rewarded_at": r["rewarded_at"].isoformat() if r["rewarded_at"] else None,
                            "paid_at": r["paid_at"].isoformat() if r["paid_at"] else None}
                           for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/users/me/referrals", my_referrals)
