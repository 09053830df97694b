"""The JSON API described in OpenAPI 3.1: GET /openapi.json (built once per process from the path
modules beside this one) and GET /docs, the same description as a page rendered on the server with
a stylesheet served from here — no script, nothing from elsewhere, so it works offline (decision 0019)."""

from __future__ import annotations

import copy
import re
from importlib import metadata, resources
from typing import Any

import orjson
from aiohttp import web

from gateway.api.openapi import account_paths, admin_paths, docs_page, gateway_paths, money_paths
from gateway.api.openapi.schemas import COMPONENTS, SECURITY_SCHEMES
from gateway.core.app_keys import SETTINGS
from gateway.core.middleware import CALL

DOCUMENT = web.AppKey("openapi_document", dict)
STYLESHEET = resources.files("gateway.api.openapi").joinpath("static/docs.css").read_bytes()
TAGS = ["auth", "credits", "access tokens", "bundles", "referrals", "API keys", "budgets", "usage", "payments",
        "staff", "billing CRM", "AI: OpenAI", "AI: Anthropic", "AI: Gemini", "desktop proxy", "operations"]
DOCS_SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; "
                                                    "base-uri 'none'; form-action 'none'",
                         "Cache-Control": "no-cache"}


def _version() -> str:
    try:
        return metadata.version("tollgate")
    except metadata.PackageNotFoundError:
        return "0"


def document(public_url: str) -> dict[str, Any]:
    """The whole description; each operation's id is its method and path."""
    paths: dict[str, dict[str, Any]] = {}
    for module in (account_paths, admin_paths, money_paths, gateway_paths):
        for path, operations in copy.deepcopy(module.PATHS).items():
            assert path not in paths, f"{path} described twice"
            paths[path] = operations
            for method, spec in operations.items():
                spec["operationId"] = method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return {
        "openapi": "3.1.0",
        "info": {"title": "tollgate", "version": _version(),
                 "description": "A metering gateway: accounts, credits, API keys, budgets and usage, payments, "
                                "and the metered AI routes in each provider's own wire format. Money is a "
                                "decimal string of credits (1 credit = 1,000,000 micro-credits); errors are "
                                '{"error": {"code", "message", "request_id"}} (the provider\'s own shape on AI '
                                "routes)."},
        "servers": [{"url": public_url.rstrip("/")}],
        "tags": [{"name": tag} for tag in TAGS],
        "paths": paths,
        "components": {"schemas": copy.deepcopy(COMPONENTS), "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
    }


async def openapi_json(request: web.Request) -> web.Response:
    request[CALL].route = "docs"
    return web.Response(body=orjson.dumps(request.app[DOCUMENT]), content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    request[CALL].route = "docs"
    return web.Response(text=docs_page.render(request.app[DOCUMENT], TAGS), content_type="text/html",
                        headers=DOCS_SECURITY_HEADERS)


async def stylesheet(request: web.Request) -> web.Response:
    request[CALL].route = "docs"
    return web.Response(body=STYLESHEET, content_type="text/css", headers={"Cache-Control": "max-age=3600"})


def add_routes(app: web.Application) -> None:
    app[DOCUMENT] = document(app[SETTINGS].public_url)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/static/docs.css", stylesheet)
