"""The payments wing's resources: its app key, the one provider HTTP session, the configured
providers, and the re-check task every worker owns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
from aiohttp import web

from gateway.accounts.mail import Sender
from gateway.accounts.resources import MAILER
from gateway.core import payment_settings
from gateway.core.app_keys import CLOCK, DATABASE, SETTINGS
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.payments.cryptocloud import CryptoCloud
from gateway.payments.providers import Provider
from gateway.payments.robokassa import Robokassa
from gateway.payments.stripe import Stripe

PROVIDER_CONNECTIONS_MAX = 32


@dataclass(slots=True)
class Payments:
    settings: Settings
    clock: Clock
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    providers: dict[str, Provider]  # the configured ones only
    mailer: Sender


PAYMENTS = web.AppKey("payments", Payments)


def configured(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Provider]:
    made: dict[str, Provider] = {"stripe": Stripe(settings, session), "cryptocloud": CryptoCloud(settings, session),
                                 "robokassa": Robokassa(settings)}
    return {name: provider for name, provider in made.items() if payment_settings.enabled(settings, name)}


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.payments import recheck

    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.payment_timeout_s, connect=settings.payment_timeout_s)
    session = aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                    connector=aiohttp.TCPConnector(limit=PROVIDER_CONNECTIONS_MAX))
    services = app[PAYMENTS] = Payments(settings, app[CLOCK], app[DATABASE], session,
                                        configured(settings, session), app[MAILER])
    task = asyncio.create_task(recheck.run(services, settings.payment_recheck_interval_s), name="payment-recheck")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await session.close()
