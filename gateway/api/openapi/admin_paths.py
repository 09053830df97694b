"""The OpenAPI paths of staff: users, their tokens, keys and budgets, credits, stats, audit, bundles,
model prices and usage (admins see everyone; managers their clients, anyone else is a 404)."""

from __future__ import annotations

from gateway.api.openapi.account_paths import GROUP_BY, report
from gateway.api.openapi.schemas import (AMOUNT, BOOLEAN, CREDITS, EMAIL, ID, INTEGER, PAGE, TEXT, TIME, Schema,
                                         answer, array, json_body, listing, nullable, obj, operation, path_id, query,
                                         ref)

STAFF_USER = obj({"id": ID, "email": TEXT, "username": nullable(TEXT), "full_name": TEXT, "role": TEXT, "plan": TEXT,
                  "is_active": BOOLEAN, "manager_id": nullable(ID), "referral_code": TEXT,
                  "created_at": TIME, "balance": CREDITS})
ROLE = {"enum": ["client", "manager", "admin"]}
PLAN = {"enum": ["free", "premium", "enterprise"]}
BUNDLE_FIELDS = {"name": {"type": "string", "minLength": 1, "maxLength": 100}, "description": TEXT,
                 "token_count": {"type": "integer", "minimum": 1, "maximum": 1000},
                 "duration_hours": INTEGER, "scope": {"enum": ["full", "certificates_only"]},
                 "price": AMOUNT, "is_active": BOOLEAN}
USER_ID = path_id("user_id")
STATS = obj({"period": TEXT, "since": nullable(TIME), "users": obj({"total": INTEGER, "active": INTEGER,
                                                                   "new": INTEGER, "by_role": obj()}),
             "active_tokens": INTEGER, "credits": obj({"sold": CREDITS, "spent": CREDITS, "refunded": CREDITS,
                                                       "bonuses": CREDITS})})
AUDIT_ENTRY = obj({"id": ID, "actor_id": nullable(ID), "action": TEXT, "target_type": TEXT, "target_id": TEXT,
                   "ip": TEXT, "details": obj(), "created_at": TIME})
STAFF_TEXT = {"type": "string", "maxLength": 200}


def staff(summary: str, responses: dict[int, Schema], **extra) -> Schema:
    return operation(summary, "staff", responses, **extra)


PATHS: dict[str, dict[str, Schema]] = {
    "/api/v1/admin/users": {"get": staff("Find users", {200: answer("users", listing(STAFF_USER, paged=True))},
                                         parameters=[query("search", STAFF_TEXT), query("role", ROLE),
                                                     query("plan", PLAN), query("is_active", BOOLEAN),
                                                     query("manager_id", ID), *PAGE])},
    "/api/v1/admin/users/{user_id}": {
        "get": staff("A user", {200: answer("the user", STAFF_USER)}, parameters=[USER_ID]),
        "patch": staff("Change a user's state, role, plan or manager (all or nothing)",
                       {200: answer("the user", STAFF_USER)}, parameters=[USER_ID], body=json_body(obj(
                           {}, {"is_active": BOOLEAN, "role": ROLE, "plan": PLAN, "manager_id": nullable(ID)},
                           closed=True)))},
    "/api/v1/admin/users/{user_id}/tokens": {"get": staff(
        "A user's access tokens", {200: answer("tokens", listing(ref("AccessToken"), paged=True))},
        parameters=[USER_ID, query("active_only", BOOLEAN, "default false"), *PAGE])},
    "/api/v1/admin/users/{user_id}/keys": {"get": staff(
        "A user's API keys with their budgets' spend", {200: answer("keys", obj(
            {"user_id": ID, "items": array(ref("ApiKey"))}))}, parameters=[USER_ID])},
    "/api/v1/admin/keys/{key_id}/revoke": {"post": staff(
        "Revoke a user's API key", {200: answer("revoked", obj({"id": ID, "user_id": ID, "revoked": BOOLEAN}))},
        parameters=[path_id("key_id")])},
    "/api/v1/admin/users/{user_id}/budget": {
        "put": staff("Set a user's budget (over all their keys)", {200: answer("the budget", obj(
            {"user_id": ID, "budget": nullable(ref("Budget"))}))}, parameters=[USER_ID],
            body=json_body(ref("BudgetInput"))),
        "delete": staff("Remove a user's budget", {200: answer("removed", obj(
            {"user_id": ID, "budget": {"type": "null"}}))}, parameters=[USER_ID])},
    "/api/v1/admin/users/{user_id}/adjust": {"post": operation(
        "Top up or deduct credits with a reason (admins)", "staff", {201: answer("moved", obj(
            {"transfer_id": ID, "user_id": ID, "replayed": BOOLEAN, "credits": CREDITS, "balance": CREDITS})),
            200: answer("a replay", obj({"transfer_id": ID}))},
        parameters=[USER_ID, {"name": "Idempotency-Key", "in": "header", "required": False,
                              "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"}}],
        body=json_body(obj({"credits": CREDITS, "reason": {"type": "string", "minLength": 1, "maxLength": 500}})))},
    "/api/v1/admin/tokens": {"post": staff(
        "Issue an access token to a user (shown once)", {201: answer("the token", obj(
            {"id": ID, "token": TEXT, "user_id": ID, "scope": TEXT, "expires_at": TIME}))},
        body=json_body(obj({"hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 87840}},
                           {"email": EMAIL, "user_id": ID, "scope": {"enum": ["full", "certificates_only"]}})))},
    "/api/v1/admin/tokens/{token_id}": {"delete": staff(
        "Revoke a token without a refund (admins)", {200: answer("revoked", obj({"id": ID, "revoked": BOOLEAN}))},
        parameters=[path_id("token_id")])},
    "/api/v1/admin/tokens/{token_id}/revoke": {"post": staff(
        "Revoke a token without a refund", {200: answer("revoked", obj(
            {"id": ID, "revoked": BOOLEAN, "already_revoked": BOOLEAN, "revoked_at": TIME}))},
        parameters=[path_id("token_id")])},
    "/api/v1/admin/stats": {"get": staff("Users, tokens and credits over a period", {200: answer("stats", STATS)},
                                         parameters=[query("period", {"enum": ["day", "week", "month", "all"]})])},
    "/api/v1/admin/audit": {"get": staff(
        "The audit log (admins)", {200: answer("entries", listing(AUDIT_ENTRY, paged=True))},
        parameters=[query("action", STAFF_TEXT), query("actor_id", ID), query("target_type", STAFF_TEXT),
                    query("target_id", STAFF_TEXT), *PAGE])},
    "/api/v1/admin/bundles": {
        "get": staff("Every bundle (admins)", {200: answer("bundles", listing(ref("Bundle")))}),
        "post": staff("Create a bundle (admins)", {201: answer("the bundle", ref("Bundle"))},
                      body=json_body(obj({name: BUNDLE_FIELDS[name] for name in
                                          ("name", "token_count", "duration_hours", "price")},
                                         {name: BUNDLE_FIELDS[name] for name in ("description", "scope", "is_active")},
                                         closed=True)))},
    "/api/v1/admin/bundles/{bundle_id}": {
        "patch": staff("Change a bundle (admins)", {200: answer("the bundle", ref("Bundle"))},
                       parameters=[path_id("bundle_id")], body=json_body(obj({}, BUNDLE_FIELDS, closed=True))),
        "delete": staff("Stop selling a bundle (admins)", {200: answer("deleted", obj(
            {"id": ID, "deleted": BOOLEAN}))}, parameters=[path_id("bundle_id")])},
    "/api/v1/admin/prices": {"get": staff("Model prices (admins)", {200: answer("prices", listing(ref("Price")))})},
    "/api/v1/admin/prices/{model}": {"put": staff(
        "Set a model's price per million tokens (admins)", {200: answer("the price", ref("Price"))},
        parameters=[{"name": "model", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"}}],
        body=json_body(obj({"input_per_mtok": AMOUNT, "output_per_mtok": AMOUNT, "cached_input_per_mtok": AMOUNT},
                           {"provider": {"enum": ["openai", "anthropic", "gemini"]},
                            "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 10_000_000}},
                           closed=True)))},
    "/api/v1/admin/usage": {"get": report("AI usage of everyone, or of one user", "staff",
                                          [query("user", ID), GROUP_BY])},
    "/api/v1/admin/usage/calls": {"get": report("AI calls one by one", "staff", [query("user", ID)])},
    "/api/v1/admin/usage/sessions": {"get": report("Proxy sessions per access token and day", "staff",
                                                   [query("user", ID)])},
}
