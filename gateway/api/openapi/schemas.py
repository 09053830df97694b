"""The OpenAPI description's building blocks: small helpers for schemas and operations, and the
component schemas the paths share (money is a decimal string of credits, never a float)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

INTEGER: Schema = {"type": "integer"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
TEXT: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
DAY: Schema = {"type": "string", "format": "date"}
CREDITS: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,6})?$",
                   "description": "credits as a decimal string (up to 6 decimals)", "examples": ["12.5"]}
AMOUNT: Schema = {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,6})?$",
                  "description": "a non-negative amount of credits as a decimal string", "examples": ["10"]}
EMAIL: Schema = {"type": "string", "format": "email", "maxLength": 254}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema] | None = None, optional: dict[str, Schema] | None = None, *,
        closed: bool = False) -> Schema:
    """An object with these properties (`closed`: no others, as the request bodies tollgate checks)."""
    properties = {**(required or {}), **(optional or {})}
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: Schema | None = None, media: str = "application/json") -> Schema:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


def query(name: str, schema: Schema, description: str = "") -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_id(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": ID}


PAGE = [query("skip", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 200})]
ERROR = obj({"error": obj({"code": TEXT, "message": TEXT, "request_id": TEXT})})


def operation(summary: str, tag: str, responses: dict[int, Schema], *, security: str | None = "bearer",
              parameters: list[Schema] | None = None, body: Schema | None = None,
              error: str = "Error", description: str = "") -> Schema:
    """One operation; errors answer `error` (a component) under every other status."""
    spec: Schema = {"summary": summary, "tags": [tag], "operationId": "",
                    "responses": {str(status): value for status, value in responses.items()}}
    spec["responses"]["default"] = answer("an error", ref(error))
    if description:
        spec["description"] = description
    if security is not None:
        spec["security"] = [{security: []}]
    if parameters:
        spec["parameters"] = parameters
    if body is not None:
        spec["requestBody"] = body
    return spec


USER = obj({"id": ID, "email": TEXT, "username": nullable(TEXT), "full_name": TEXT, "role": TEXT, "plan": TEXT,
            "is_active": BOOLEAN, "referral_code": TEXT, "manager_id": nullable(ID)}, {"balance": CREDITS})
BUDGET = obj({"limit": CREDITS, "period": {"enum": ["day", "week", "month", "total"]},
              "alert_percent": INTEGER, "spent": CREDITS, "held": CREDITS, "remaining": CREDITS,
              "window_start": nullable(TIME), "resets_at": nullable(TIME)})
BUDGET_INPUT = obj({"limit": AMOUNT, "period": {"enum": ["day", "week", "month", "total"]}},
                   {"alert_percent": {"type": "integer", "minimum": 0, "maximum": 100}}, closed=True)
KEY = obj({"id": ID, "prefix": TEXT, "name": TEXT, "allowed_models": array(TEXT), "ip_allowlist": array(TEXT),
           "rpm_limit": INTEGER, "tpm_limit": INTEGER, "created_at": TIME, "expires_at": nullable(TIME),
           "revoked_at": nullable(TIME), "rotated_at": nullable(TIME), "previous_secret_expires_at": nullable(TIME),
           "active": BOOLEAN, "budget": nullable(ref("Budget"))}, {"key": TEXT})
TOKEN = obj({"id": ID, "scope": TEXT, "created_at": TIME, "expires_at": TIME, "revoked_at": nullable(TIME),
             "active": BOOLEAN, "duration_hours": INTEGER, "price": CREDITS, "refund": nullable(CREDITS)})
PURCHASE = obj({"transfer_id": ID, "price": CREDITS, "replayed": BOOLEAN, "new_balance": CREDITS,
                "tokens": array(obj({"id": ID, "token": TEXT, "scope": TEXT, "expires_at": TIME}))})
BUNDLE = obj({"id": ID, "name": TEXT, "description": TEXT, "token_count": INTEGER, "duration_hours": INTEGER,
              "scope": TEXT, "price": CREDITS, "price_per_token": CREDITS, "regular_price": nullable(CREDITS),
              "savings": nullable(CREDITS), "savings_percent": nullable({"type": "number"}), "is_active": BOOLEAN})
PAYMENT = obj({"payment_id": ID, "provider": TEXT, "status": TEXT, "amount": TEXT, "currency": TEXT,
               "credits": CREDITS, "bundle_id": nullable(ID), "payment_url": nullable(TEXT),
               "user_id": nullable(ID), "refunded_credits": CREDITS, "created_at": TIME, "paid_at": nullable(TIME)},
              {"history": array(obj({"status": TEXT, "event": TEXT, "at": TIME}))})
PRICE = obj({"model": TEXT, "provider": TEXT, "input_per_mtok": CREDITS, "output_per_mtok": CREDITS,
             "cached_input_per_mtok": CREDITS})
BALANCE = obj({"balance": CREDITS, "posted": CREDITS, "held": CREDITS, "overdraft_limit": CREDITS, "owed": CREDITS,
               "currency": {"const": "credits"}})


def listing(item: Schema, paged: bool = False) -> Schema:
    extra = {"total": INTEGER, "skip": INTEGER, "limit": INTEGER} if paged else {}
    return obj({"items": array(item), **extra})


COMPONENTS: dict[str, Schema] = {
    "Error": ERROR,
    "ProviderError": {"type": "object", "description": "the provider's own error shape (OpenAI, Anthropic, Gemini)"},
    "CrmError": obj({"error": {"const": True}, "code": TEXT, "message": TEXT}, {"request_id": TEXT}),
    "User": USER, "Budget": BUDGET, "BudgetInput": BUDGET_INPUT, "ApiKey": KEY, "AccessToken": TOKEN,
    "Purchase": PURCHASE, "Bundle": BUNDLE, "Payment": PAYMENT, "Price": PRICE, "Balance": BALANCE,
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "an access token from /api/v1/auth/login"},
    "apiKey": {"type": "http", "scheme": "bearer", "description": "a tollgate API key (tg_…) from /api/v1/keys; "
               "also as x-api-key, x-goog-api-key or ?key="},
    "accessToken": {"type": "apiKey", "in": "header", "name": "X-Access-Token",
                    "description": "an access token of the desktop path, with X-Device-ID"},
}
