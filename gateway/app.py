"""The aiohttp application: the core's resources and middleware, and each wing's routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from admin_ui import routes as admin_ui_routes
from gateway.accounts import mail
from gateway.accounts.resources import MAILER, accounts_ctx
from gateway.ai import crm as ai_crm
from gateway.ai import handler as ai_handler
from gateway.api import (admin_keys, admin_tokens, admin_users, auth, budgets, bundles, currency, keys, openapi,
                         payments, prices, referrals, tokens, usage, webhooks)
from gateway.core import database_pool, health, metrics, redis_client
from gateway.core.admin_origin import AdminOrigin
from gateway.core.app_keys import (ADMIN_ORIGIN, BROWSER_POLICY, CLOCK, DATABASE, ERROR_SHAPE_PREFIXES,
                                   READINESS_PROBES, REDIS, REPORTS_DATABASE, SETTINGS, STOPPING)
from gateway.core.browser import BrowserPolicy
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.connections import stopping
from gateway.core.middleware import observe, secure_response
from gateway.payments.resources import payments_ctx
from gateway.proxy import handler as proxy_handler


async def _count_queries(connection: asyncpg.Connection) -> None:
    connection.add_query_logger(lambda _query: metrics.DATABASE_QUERIES.inc())


# How the reports' connections name themselves (pg_stat_activity on the replica shows them).
REPORTS_APPLICATION_NAME = "tollgate-reports"


async def _pool(settings: Settings, url: str, min_size: int, **connect: object) -> asyncpg.Pool:
    return await database_pool.create(url, min_size=min_size, max_size=settings.database_pool_max,
                                      init=_count_queries, command_timeout=settings.database_timeout_s, **connect)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DATABASE] = await _pool(settings, settings.database_url.value, settings.database_pool_min)
    replica_url = settings.database_replica_url.value
    # min_size=0: no connection at start-up, so the gateway starts and serves everything but the
    # reports while the replica is down (they answer 503 until it is back).
    app[REPORTS_DATABASE] = (await _pool(settings, replica_url, 0, server_settings={
        "application_name": REPORTS_APPLICATION_NAME}) if replica_url else app[DATABASE])
    yield
    if app[REPORTS_DATABASE] is not app[DATABASE]:
        await app[REPORTS_DATABASE].close()
    await app[DATABASE].close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[REDIS] = redis_client.connect(settings, decode_responses=True,
                                      max_connections=settings.redis_connections_max + 16)
    await redis_client.warm_up(app[REDIS])
    yield
    await app[REDIS].aclose()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    metrics.WORKERS.inc()
    yield
    metrics.WORKERS.dec()


def request_handler_args(settings: Settings) -> dict[str, object]:
    """How every connection of this application reads HTTP, whichever runner serves it.

    auto_decompress=False: a request body reaches a handler exactly as the client sent it. The
    proxy forwards those bytes with the client's own Content-Encoding and Content-Length; an
    inflated body under the compressed length desynchronised the upstream connection and let a
    body smuggle a second request past the scope checks (attack 2026-12-01, H1). JSON handlers
    inflate what they read themselves (json_body.read_bytes), with a cap on the inflated size.
    """
    return {"auto_decompress": False, "keepalive_timeout": settings.idle_timeout_s}


def create_app(settings: Settings, clock: Clock | None = None,
               mailer: mail.Sender | None = None) -> web.Application:
    settings.require("database_url", "redis_url", "target_url", "public_url", "jwt_secret")
    app = web.Application(middlewares=[observe], client_max_size=settings.json_body_max_bytes,
                          handler_args=request_handler_args(settings))
    app.on_response_prepare.append(secure_response)  # also names the server
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app[MAILER] = mailer or mail.sender_for(settings)
    app[BROWSER_POLICY] = BrowserPolicy.from_settings(settings)  # a malformed origin stops start-up here
    app[ADMIN_ORIGIN] = AdminOrigin.from_settings(settings)
    app[READINESS_PROBES] = {}
    app[ERROR_SHAPE_PREFIXES] = []
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(stopping)  # set once the listeners are closed, before in-flight requests are awaited
    # Set up in this order, torn down in reverse: the stores, then what stands on them.
    app.cleanup_ctx.extend([database_ctx, redis_ctx, accounts_ctx, payments_ctx, health.watch_ctx, worker_ctx])
    health.add_routes(app)
    for api in (auth, currency, tokens, bundles, referrals, keys, budgets, prices, admin_tokens, admin_users,
                admin_keys, usage, payments, webhooks, openapi):
        api.add_routes(app)
    ai_handler.add_routes(app)
    ai_crm.add_routes(app)
    proxy_handler.add_routes(app)
    admin_ui_routes.add_routes(app)
    return app
