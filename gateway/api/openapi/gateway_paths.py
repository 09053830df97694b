"""The OpenAPI paths of the gateway itself: the metered AI routes (each in its provider's own wire
format, described as far as tollgate reads it), the billing-CRM routes, the desktop proxy, health."""

from __future__ import annotations

from gateway.api.openapi.schemas import (BOOLEAN, ID, INTEGER, TEXT, TIME, Schema, answer, array, json_body, nullable,
                                         obj, operation, query)

MESSAGES = array(obj({"role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string",
                                                                                    "maxLength": 2000}}))
MODEL = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"}


def model(*offered: str) -> dict:
    """A model of the price table: the defaults are listed; the table is the admins' (GET
    /api/v1/admin/prices), and a model not on offer is a 404 in the provider's shape."""
    return {"type": "string", "enum": list(offered),
            "description": "a priced model (these are the defaults; admins may price others)"}


GPT = model("gpt-4o-mini", "gpt-4o", "o3-mini")
CLAUDE = model("claude-haiku-4-5", "claude-sonnet-4-5", "claude-3-5-haiku-latest")
GEMINI = model("gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro")
OUTPUT = {"type": "integer", "minimum": 1, "maximum": 64}
PROVIDER_ANSWER = {"200": answer("the provider's answer (JSON, or an event stream when streaming)", obj())}
# Each server-sent event: its data (the provider's JSON, or [DONE]) and its name.
SSE = {"text/event-stream": {"schema": obj({"data": TEXT}, {"event": TEXT, "id": TEXT})}}
GEMINI_BODY = obj({"contents": array(obj({"parts": array(obj({"text": {"type": "string", "maxLength": 2000}}))}))},
                  {"generationConfig": obj({}, {"maxOutputTokens": OUTPUT})})
SESSION = obj({"device_id": TEXT, "expires_at": TIME, "expires_in_s": INTEGER})
PROXIED = ("get", "post", "put", "patch", "delete", "options")


def provider(summary: str, tag: str, body: Schema | None, *, stream: bool = False, **extra) -> Schema:
    spec = operation(summary, tag, {200: answer("the provider's answer", obj())}, security="apiKey",
                     body=json_body(body) if body is not None else None, error="ProviderError", **extra)
    if stream:
        spec["responses"]["200"]["content"].update(SSE)
    return spec


def gemini(version: str, action: str, summary: str) -> dict[str, Schema]:
    return {f"/gemini/{version}/models/{{model}}:{action}": {"post": provider(
        summary, "AI: Gemini", GEMINI_BODY, stream=action == "streamGenerateContent",
        parameters=[{"name": "model", "in": "path", "required": True, "schema": GEMINI},
                    *([query("alt", {"const": "sse"})] if action == "streamGenerateContent" else [])])}}


CHAT = obj({"model": GPT, "messages": MESSAGES}, {"max_tokens": OUTPUT, "stream": BOOLEAN})
PATHS: dict[str, dict[str, Schema]] = {
    "/openai/v1/chat/completions": {"post": provider("OpenAI chat completions", "AI: OpenAI", CHAT, stream=True)},
    "/openai/v1/completions": {"post": provider("OpenAI completions", "AI: OpenAI", obj(
        {"model": GPT, "prompt": {"type": "string", "maxLength": 2000}}, {"max_tokens": OUTPUT}), stream=True)},
    "/openai/v1/embeddings": {"post": provider("OpenAI embeddings", "AI: OpenAI", obj(
        {"model": model("text-embedding-3-small"), "input": {"type": "string", "maxLength": 2000}}))},
    "/openai/v1/responses": {"post": provider("OpenAI responses", "AI: OpenAI", obj(
        {"model": GPT, "input": {"type": "string", "maxLength": 2000}}, {"max_output_tokens": OUTPUT}),
        stream=True)},
    "/openai/v1/models": {"get": provider("OpenAI: the models on offer", "AI: OpenAI", None)},
    "/anthropic/v1/messages": {"post": provider("Anthropic messages", "AI: Anthropic", obj(
        {"model": CLAUDE, "max_tokens": OUTPUT, "messages": MESSAGES}, {"stream": BOOLEAN}), stream=True)},
    "/anthropic/v1/messages/count_tokens": {"post": provider("Anthropic token count (free)", "AI: Anthropic", obj(
        {"model": CLAUDE, "messages": MESSAGES}))},
    **gemini("v1beta", "generateContent", "Gemini generateContent"),
    **gemini("v1beta", "streamGenerateContent", "Gemini streamGenerateContent (?alt=sse)"),
    **gemini("v1beta", "countTokens", "Gemini token count (free)"),
    **gemini("v1", "generateContent", "Gemini generateContent (v1)"),
    "/api/v1/generate": {"post": operation(
        "The billing-CRM API: a provider's body, or {model, prompt, max_tokens}; 1 token = 1 micro-credit",
        "billing CRM", {200: answer("the answer and what it cost", obj(
            {"error": {"const": False}, "data": {}, "usage": obj(
                {"tokens_used": INTEGER, "balance_remaining": INTEGER, "input_tokens": INTEGER,
                 "output_tokens": INTEGER, "total_tokens": INTEGER})}))},
        security="apiKey", error="CrmError",
        body=json_body(obj({"model": model("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.0-flash", "gpt-4",
                                           "gpt-3.5-turbo", "claude-3-opus-20240229", "gemini-pro"),
                            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000}},
                           {"max_tokens": OUTPUT})))},
    "/api/v1/balance": {"get": operation(
        "The billing-CRM balance in tokens (1 token = 1 micro-credit)", "billing CRM", {200: answer("the balance", obj(
            {"user_id": ID, "balance": obj({"tokens_purchased": INTEGER, "tokens_used": INTEGER,
                                            "tokens_available": INTEGER})}))},
        security="apiKey", error="CrmError")},
    "/api/v1/proxy/status": {"get": operation(
        "The access token's validity, scope, expiry and device (does not bind)", "desktop proxy",
        {200: answer("the token's state", obj({"valid": BOOLEAN, "token": obj(
            {"id": ID, "scope": TEXT, "expires_at": TIME, "expires_in_s": INTEGER}), "session": nullable(obj())}))},
        security="accessToken")},
    "/api/v1/proxy/session": {
        "post": operation(
            "Open a browser session: the tollgate_session cookie (HttpOnly, Path=/), never the token itself",
            "desktop proxy", {201: answer("the session (the cookie in Set-Cookie)", SESSION)},
            security="accessToken"),
        "delete": operation(
            "Log out: with the cookie, that browser session (204); with the headers, every one of the token's",
            "desktop proxy", {200: answer("how many sessions ended", obj({"ended": INTEGER})),
                              204: answer("the cookie's session ended")},
            security="accessToken")},
    "/api/v1/proxy/session/link": {
        "post": operation(
            "A one-time link for the system browser (single use, short-lived)", "desktop proxy",
            {201: answer("the link", obj({"url": TEXT, "expires_at": TIME, "expires_in_s": INTEGER}))},
            security="accessToken", body=json_body(obj({}, {"path": TEXT}), required=False)),
        "get": operation(
            "Follow a one-time link: the cookie is set and the browser sent on to the target page", "desktop proxy",
            {303: answer("to the target page, with the cookie")}, security=None,
            parameters=[{"name": "code", "in": "query", "required": True, "schema": TEXT}])},
    "/api/v1/proxy/{path}": {method: operation(
        "The proxied target (X-Access-Token and X-Device-ID)", "desktop proxy",
        {200: answer("the target's answer, streamed")}, security="accessToken",
        parameters=[{"name": "path", "in": "path", "required": True, "schema": TEXT}]) for method in PROXIED},
    "/health": {"get": operation("Liveness (no I/O)", "operations", {200: answer("alive", obj({"status": TEXT}))},
                                 security=None)},
    "/ready": {"get": operation("Readiness of PostgreSQL, Redis and the target", "operations",
                                {200: answer("ready or degraded", obj()), 503: answer("not ready", obj())},
                                security=None)},
    "/openapi.json": {"get": operation("This description (OpenAPI 3.1)", "operations",
                                       {200: answer("the description", obj())}, security=None)},
    "/docs": {"get": operation("This description as a page", "operations",
                               {200: answer("the page", TEXT, "text/html")}, security=None)},
    "/metrics": {"get": operation("Prometheus metrics", "operations",
                                  {200: answer("the text format", TEXT, "text/plain")}, security=None)},
}
