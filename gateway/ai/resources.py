"""The AI wing's resources: its app keys, the shared upstream session, the key authenticator, the
price table and the usage log with their background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
from aiohttp import web

import ledger

from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.ai.authentication import ApiKeyAuthenticator
from gateway.ai.price_table import PriceTable
from gateway.ai.providers import Upstream, upstreams
from gateway.ai.usage_log import UsageLog
from gateway.core.app_keys import CLOCK, DATABASE, REDIS, SETTINGS
from gateway.core.clock import Clock
from gateway.core.config import Settings


@dataclass(slots=True)
class Services:
    """What the AI stages share, built once per worker."""

    settings: Settings
    clock: Clock
    pool: asyncpg.Pool
    keys: ApiKeyAuthenticator
    prices: PriceTable
    upstreams: dict[str, Upstream]
    session: aiohttp.ClientSession
    usage: UsageLog
    ledger: ledger.Batcher  # the holds and settlements of concurrent calls, one database call per batch


AI = web.AppKey("ai", Services)


async def ai_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=None, connect=settings.ai_connect_timeout_s,
                                    sock_read=settings.ai_read_timeout_s)
    session = aiohttp.ClientSession(timeout=timeout, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar(),
                                    connector=aiohttp.TCPConnector(limit=settings.upstream_connections_max))
    prices = PriceTable(app[DATABASE], settings)
    await prices.load()
    keys = ApiKeyAuthenticator(settings, app[REDIS], app[DATABASE], app[CLOCK], app[CREDENTIAL_OUTBOX])
    usage_log = UsageLog(app[DATABASE], lambda: prices.prices, settings.usage_pending_max)
    batcher = ledger.Batcher(app[DATABASE], window_s=settings.ledger_batch_window_s,
                             items_max=settings.ledger_batch_items_max, lanes=settings.ledger_batch_lanes)
    app[AI] = Services(settings, app[CLOCK], app[DATABASE], keys, prices, upstreams(settings), session, usage_log,
                       batcher)
    tasks = [asyncio.create_task(prices.run(settings.price_refresh_interval_s), name="prices"),
             asyncio.create_task(usage_log.run(settings.usage_flush_interval_s), name="usage-log")]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await batcher.close()  # the last settlements out before the pool closes
    await keys.close()
    with contextlib.suppress(Exception):
        await usage_log.flush()  # the last rows out before the pool closes
    await session.close()
