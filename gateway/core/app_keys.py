"""Typed application keys of the core: what every wing reaches through the app. Each wing keeps
its own keys beside its cleanup context (its resources module)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncio

import asyncpg
from aiohttp import web

from gateway.core.admin_origin import AdminOrigin
from gateway.core.browser import BrowserPolicy
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.redis_client import RedisClient

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", asyncpg.Pool)
# The pool of the admin UI's and the usage reports' reads: the read replica's when
# TOLLGATE_DATABASE_REPLICA_URL is set, else DATABASE itself (decision 0024). Nothing writes through it.
REPORTS_DATABASE = web.AppKey("reports_database", asyncpg.Pool)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
# Dependencies /ready checks besides PostgreSQL and Redis, registered by the wings that need them
# (the proxy's target): name -> a probe that raises when the dependency does not answer.
READINESS_PROBES = web.AppKey("readiness_probes", dict[str, Callable[[web.Application], Awaitable[None]]])
# The error shape of requests refused before routing (a parser error, an Expect), by path prefix:
# registered by the routes that answer in a provider's shape.
ERROR_SHAPE_PREFIXES = web.AppKey("error_shape_prefixes", list[tuple[str, str]])
# CORS origins and security-header choices, precomputed from the settings (gateway/core/browser.py).
BROWSER_POLICY = web.AppKey("browser_policy", BrowserPolicy)
# Set once the gateway is stopping (after SIGTERM the listener is closed and in-flight requests get
# TOLLGATE_SHUTDOWN_GRACE_S): a stream cut then is settled at once, without waiting for its upstream.
STOPPING = web.AppKey("stopping", asyncio.Event)
# Which listener serves the admin UI, and its origin (gateway/core/admin_origin.py, decision 0027).
ADMIN_ORIGIN = web.AppKey("admin_origin", AdminOrigin)
