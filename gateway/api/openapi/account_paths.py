"""The OpenAPI paths of an account's own JSON API: sign-in, balance and transactions, access tokens,
bundles, referrals, API keys, budgets and usage reports."""

from __future__ import annotations

from gateway.api.openapi.schemas import (BOOLEAN, CREDITS, DAY, EMAIL, ID, INTEGER, PAGE, TEXT, TIME, Schema, answer,
                                         array,
                                         json_body, listing, nullable, obj, operation, path_id, query, ref)

PAIR = obj({"access_token": TEXT, "refresh_token": TEXT, "token_type": {"const": "bearer"}, "expires_in": INTEGER})
PASSWORD = {"type": "string", "minLength": 8, "maxLength": 128}
KEY_SETTINGS = {"name": {"type": "string", "maxLength": 100}, "allowed_models": array(TEXT),
                "ip_allowlist": array(TEXT), "rpm_limit": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                "tpm_limit": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                "expires_in_hours": nullable({"type": "integer", "minimum": 1, "maximum": 24 * 3660}),
                "expires_at": nullable(TIME), "budget": nullable(ref("BudgetInput"))}
SPAN = [query("from", DAY, "first UTC day (default: 30 days before `to`)"),
        query("to", DAY, "last UTC day, included (default: today)"),
        query("format", {"enum": ["json", "csv", "jsonl"]}, "json, or an export streamed row by row")]
REPORT = obj({"report": TEXT, "from": DAY, "to": DAY, "user_id": nullable(ID), "items": array(obj()),
              "totals": obj()}, {"group_by": TEXT})
EXPORTS = {"text/csv": {"schema": TEXT}, "application/jsonl": {"schema": TEXT}}


def report(summary: str, tag: str, extra: list[Schema], security: str = "bearer") -> Schema:
    spec = operation(summary, tag, {200: answer("the report; CSV or JSON Lines when asked", REPORT)},
                     parameters=[*extra, *SPAN], security=security)
    spec["responses"]["200"]["content"].update(EXPORTS)
    return spec


KIND = {"enum": ["deposit", "purchase", "refund", "referral_bonus", "usage", "adjustment", "chargeback"]}
GROUP_BY = query("group_by", {"enum": ["day", "model", "key", "provider"]}, "default day")

PATHS: dict[str, dict[str, Schema]] = {
    "/api/v1/auth/register": {"post": operation(
        "Register", "auth", {201: answer("the new user", ref("User"))}, security=None, body=json_body(obj(
            {"email": EMAIL, "username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,32}$"},
             "password": PASSWORD, "full_name": {"type": "string", "minLength": 1, "maxLength": 200}},
            {"referral_code": TEXT})))},
    "/api/v1/auth/login": {"post": operation(
        "Log in", "auth", {200: answer("a token pair", PAIR)}, security=None,
        body=json_body(obj({"email": EMAIL, "password": {"type": "string", "maxLength": 128}})))},
    "/api/v1/auth/refresh": {"post": operation(
        "A new token pair (each refresh token works once)", "auth", {200: answer("a token pair", PAIR)},
        security=None, body=json_body(obj({"refresh_token": TEXT})))},
    "/api/v1/auth/logout": {"post": operation(
        "End this access token (and with a refresh token its whole login)", "auth",
        {200: answer("logged out", obj({"logged_out": BOOLEAN}))},
        body=json_body(obj({}, {"refresh_token": TEXT}), required=False))},
    "/api/v1/auth/me": {"get": operation("The caller with their balance", "auth", {200: answer("you", ref("User"))})},
    "/api/v1/auth/magic-link": {"post": operation(
        "Mail a login link", "auth", {202: answer("sent (whether or not the address has an account)",
                                                  obj({"sent": BOOLEAN}))},
        security=None, body=json_body(obj({"email": EMAIL})))},
    "/api/v1/auth/magic-link/verify": {
        "get": operation("The link's page (a button that posts it)", "auth",
                         {200: answer("a page", TEXT, "text/html")}, security=None,
                         parameters=[query("token", TEXT)]),
        "post": operation("Log in with a mailed link (once, within 24 h)", "auth", {200: answer("a token pair", PAIR)},
                          security=None, body=json_body(obj({"token": TEXT})))},
    "/api/v1/auth/password": {"post": operation(
        "Set the password (a guest's account: the first one with the bearer alone)", "auth",
        {200: answer("set", obj({"password_set": BOOLEAN}))},
        body=json_body(obj({"password": PASSWORD}, {"current_password": {"type": "string", "maxLength": 128}})))},
    "/api/v1/currency/balance": {"get": operation(
        "Your balance", "credits", {200: answer("what may be spent, posted, held and owed", ref("Balance"))})},
    "/api/v1/currency/transactions": {"get": operation(
        "Your ledger entries, newest first", "credits", {200: answer("entries", listing(obj(
            {"id": ID, "type": TEXT, "phase": TEXT, "amount": CREDITS, "held": nullable(CREDITS),
             "hold_id": nullable(ID), "description": TEXT, "created_at": TIME}), paged=True))},
        parameters=[*PAGE, *(query(name, KIND) for name in ("type", "transaction_type"))])},
    "/api/v1/tokens/purchase": {"post": operation(
        "Buy an access token with credits", "access tokens", {201: answer("bought (shown once)", ref("Purchase")),
                                                              200: answer("a replay", ref("Purchase"))},
        body=json_body(obj({"duration_hours": {"type": "integer", "examples": [1, 12, 24, 168, 720]}},
                           {"scope": {"enum": ["full", "certificates_only"]}})),
        parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"}}])},
    "/api/v1/tokens/my-tokens": {"get": operation(
        "Your access tokens (active ones unless active_only=false)", "access tokens",
        {200: answer("tokens", obj({"items": array(ref("AccessToken")), "skip": INTEGER, "limit": INTEGER}))},
        parameters=[query("active_only", BOOLEAN, "default true"), *PAGE])},
    "/api/v1/tokens/{token_id}": {"delete": operation(
        "Revoke your token for a refund of the unused time", "access tokens", {200: answer("revoked", obj(
            {"id": ID, "revoked": BOOLEAN, "refund": CREDITS, "refund_transfer_id": nullable(ID)}))},
        parameters=[path_id("token_id")])},
    "/api/v1/bundles": {"get": operation("The bundles on sale", "bundles",
                                         {200: answer("bundles", listing(ref("Bundle")))}, security=None)},
    "/api/v1/bundles/{bundle_id}": {"get": operation(
        "A bundle", "bundles", {200: answer("the bundle", ref("Bundle"))}, security=None,
        parameters=[path_id("bundle_id")])},
    "/api/v1/bundles/{bundle_id}/purchase": {"post": operation(
        "Buy a bundle with credits", "bundles", {201: answer("bought", ref("Purchase")),
                                                 200: answer("a replay", ref("Purchase"))},
        parameters=[path_id("bundle_id")])},
    "/api/v1/users/me/referrals": {"get": operation("Your referrals", "referrals", {200: answer("totals", obj(
        {"referral_code": TEXT, "referral_link": TEXT, "total_referrals": INTEGER, "qualifying_referrals": INTEGER,
         "total_bonus_earned": CREDITS, "total_pending": CREDITS, "referred_users": array(obj())}))})},
    "/api/v1/users/me/budget": {"get": operation("Your budget and its spend so far", "budgets", {200: answer(
        "the budget (null: none)", obj({"user_id": ID, "budget": nullable(ref("Budget"))}))})},
    "/api/v1/keys": {
        "get": operation("Your API keys with their budgets' spend", "API keys",
                         {200: answer("keys", listing(ref("ApiKey")))}),
        "post": operation("Create an API key (shown once)", "API keys", {201: answer("the key", ref("ApiKey"))},
                          body=json_body(obj({}, KEY_SETTINGS, closed=True)))},
    "/api/v1/keys/{key_id}": {
        "patch": operation("Change a key: the fields given change; applies from its next call", "API keys",
                           {200: answer("the key", ref("ApiKey"))}, parameters=[path_id("key_id")],
                           body=json_body(obj({}, KEY_SETTINGS, closed=True))),
        "delete": operation("Revoke a key", "API keys", {200: answer("revoked", obj({"id": ID, "revoked": BOOLEAN}))},
                            parameters=[path_id("key_id")])},
    "/api/v1/keys/{key_id}/rotate": {"post": operation(
        "A new secret; the old one works for the grace period", "API keys",
        {200: answer("the key with its new secret", ref("ApiKey"))}, parameters=[path_id("key_id")])},
    "/api/v1/usage": {"get": report("Your AI usage grouped by day, model, key or provider", "usage", [GROUP_BY])},
    "/api/v1/usage/calls": {"get": report("Your AI calls one by one", "usage", [])},
    "/api/v1/usage/sessions": {"get": report("Your proxy sessions per access token and day", "usage", [])},
}
