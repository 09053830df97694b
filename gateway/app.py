"""The aiohttp application: routes, middleware and the resources each worker owns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import redis.asyncio as redis_asyncio
from aiohttp import web

from gateway.api import admin_tokens as admin_api
from gateway.api import admin_users as admin_users_api
from gateway.api import auth as auth_api
from gateway.api import bundles as bundles_api
from gateway.api import currency as currency_api
from gateway.core import health
from gateway.accounts import hold_expiry
from gateway.accounts import mail
from gateway.core import metrics
from gateway.proxy import handler as proxy
from gateway.accounts import referral_bonuses
from gateway.api import referrals as referrals_api
from gateway.api import tokens as tokens_api
from gateway.proxy.authentication import Authenticator
from gateway.core.clock import Clock
from gateway.ai import handler as ai_handlers
from gateway.api import keys as keys_api
from gateway.api import prices as prices_api
from gateway.core.config import Settings
from gateway.core.connections import name_the_server
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.core.app_keys import (AUTHENTICATOR, CLOCK, CREDENTIAL_OUTBOX, DATABASE, MAILER, REDIS, SESSIONS, SETTINGS,
                          TARGET_SESSION, URL_MAPS)
from gateway.core.middleware import observe
from gateway.proxy.rewriting import UrlMap
from gateway.proxy.sessions import SessionRecorder

PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _count_queries(connection: asyncpg.Connection) -> None:
    connection.add_query_logger(lambda _query: metrics.DATABASE_QUERIES.inc())


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DATABASE] = await asyncpg.create_pool(
        settings.database_url.value, min_size=settings.database_pool_min,
        max_size=settings.database_pool_max, init=_count_queries,
        command_timeout=settings.database_timeout_s)
    yield
    await app[DATABASE].close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[REDIS] = redis_asyncio.from_url(
        settings.redis_url.value, decode_responses=True,
        max_connections=settings.redis_connections_max + 16,
        socket_timeout=settings.redis_timeout_s, socket_connect_timeout=settings.redis_timeout_s)
    yield
    await app[REDIS].aclose()


async def target_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=settings.upstream_connections_max, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, connect=settings.upstream_connect_timeout_s,
                                    sock_read=settings.upstream_read_timeout_s)
    # Only the client's own headers go upstream: no invented User-Agent or Accept-Encoding.
    app[TARGET_SESSION] = aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding"))
    yield
    await app[TARGET_SESSION].close()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    outbox = app[CREDENTIAL_OUTBOX] = CredentialOutbox(app[REDIS], settings.auth_cache_ttl_s)
    app[AUTHENTICATOR] = Authenticator(settings, app[REDIS], app[DATABASE], app[CLOCK], outbox)
    recorder = SessionRecorder(app[DATABASE], app[CLOCK], idle_s=settings.device_idle_s,
                               pending_max=settings.session_pending_max)
    app[SESSIONS] = recorder
    tasks = [asyncio.create_task(recorder.run(settings.session_flush_interval_s), name="sessions"),
             asyncio.create_task(hold_expiry.run(app[DATABASE], app[CLOCK], settings.hold_expiry_interval_s),
                                 name="hold-expiry"),
             asyncio.create_task(referral_bonuses.run(app[DATABASE], app[CLOCK],
                                                      settings.referral_sweep_interval_s), name="referral-bonuses"),
             asyncio.create_task(outbox.run(settings.database_url.value, settings.credential_outbox_poll_s,
                                            settings.database_timeout_s), name="credential-outbox")]
    metrics.WORKERS.inc()
    yield
    metrics.WORKERS.dec()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(Exception):
        await recorder.flush()  # last counters out before the pool closes


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
    app = web.Application(middlewares=[observe], client_max_size=64 * 1024,
                          handler_args=request_handler_args(settings))
    app.on_response_prepare.append(name_the_server)
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app[MAILER] = mailer or mail.sender_for(settings)
    app[URL_MAPS] = {prefix: UrlMap.from_urls(settings.target_url, settings.public_url, prefix)
                     for prefix in settings.target_prefixes}
    app.cleanup_ctx.extend([database_ctx, redis_ctx, target_ctx, services_ctx])

    app.router.add_get("/health", health.health)
    app.router.add_get("/ready", health.ready)
    app.router.add_get("/metrics", health.metrics_endpoint)
    for api in (auth_api, currency_api, tokens_api, bundles_api, referrals_api, keys_api, prices_api, ai_handlers):
        api.add_routes(app)
    app.router.add_post("/api/v1/admin/tokens", admin_api.issue_token)
    app.router.add_delete("/api/v1/admin/tokens/{token_id}", admin_api.revoke_token)
    admin_users_api.add_routes(app)
    app.router.add_get("/api/v1/proxy/status", proxy.status)
    for prefix in settings.target_prefixes:
        handler = proxy.make_proxy_handler(prefix)
        for method in PROXY_METHODS:
            app.router.add_route(method, prefix + "/{tail:.*}", handler)
    return app
