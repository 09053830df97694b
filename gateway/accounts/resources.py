"""The accounts wing's resources: the credential outbox and the mailer (app keys), and the
background work every worker owns — pushing queued refusals, voiding expired holds, paying the
referral bonuses of final purchases, giving the budget alerts that are due, watching the ledger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.accounts import budgets, hold_expiry, ledger_watch, referral_bonuses
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.accounts.mail import Sender
from gateway.core.app_keys import CLOCK, DATABASE, REDIS, SETTINGS

CREDENTIAL_OUTBOX = web.AppKey("credential_outbox", CredentialOutbox)
MAILER = web.AppKey("mailer", Sender)


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    outbox = app[CREDENTIAL_OUTBOX] = CredentialOutbox(app[REDIS], settings.auth_cache_ttl_s,
                                                       settings.redis_revocation_replicas,
                                                       int(settings.redis_timeout_s * 500))
    tasks = [
        asyncio.create_task(outbox.run(settings.database_url.value, settings.credential_outbox_poll_s,
                                       settings.database_timeout_s), name="credential-outbox"),
        asyncio.create_task(hold_expiry.run(app[DATABASE], app[CLOCK], settings.hold_expiry_interval_s),
                            name="hold-expiry"),
        asyncio.create_task(referral_bonuses.run(app[DATABASE], app[CLOCK], settings.referral_sweep_interval_s),
                            name="referral-bonuses"),
        asyncio.create_task(budgets.run(app[DATABASE], app[CLOCK], settings.budget_alert_interval_s),
                            name="budget-alerts"),
        asyncio.create_task(ledger_watch.run(app[DATABASE], app[CLOCK], settings.watch_interval_s,
                                             settings.reconcile_interval_s), name="ledger-watch"),
    ]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
