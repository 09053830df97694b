"""Buying, using and revoking access tokens through the API, for refund and referral tests."""

from __future__ import annotations

import datetime as dt

import ledger

PURCHASE = "/api/v1/tokens/purchase"
CREDIT = ledger.MICRO_PER_CREDIT


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
