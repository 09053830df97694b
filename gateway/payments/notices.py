"""The mail a guest gets once their payment is credited: a one-time login link to their account.

Sent after the transaction committed, once per credit. A mail that cannot be sent is logged, never
retried here: the guest can ask for a new link at /api/v1/auth/magic-link with the same address.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from urllib.parse import quote

import asyncpg

import ledger
from gateway.accounts import logins, users
from gateway.accounts.mail import Mail, Sender
from gateway.core.config import Settings
from gateway.payments.settlement import Settled

log = logging.getLogger(__name__)


async def mail_guest(pool: asyncpg.Pool, settings: Settings, mailer: Sender, settled: Settled,
                     now: dt.datetime) -> bool:
    """Mail the guest of a payment credited just now their login link; whether a mail went out."""
    if settled.guest_email is None or settled.payment.user_id is None or settings.mail_sender == "none":
        return False
    user = await users.by_id(pool, settled.payment.user_id)
    if user is None or not user.is_active:
        return False
    token = await logins.create_magic_link(pool, settings, user_id=user.id, now=now)
    link = f"{settings.public_url.rstrip('/')}/api/v1/auth/magic-link/verify?token={quote(token)}"
    hours = settings.magic_link_ttl_s // 3600
    text = (f"Your payment of {settled.payment.amount} {settled.payment.currency} is confirmed: "
            f"{ledger.format_micro(settled.payment.credits_micro)} credits are in your tollgate account.\n"
            f"Open this link to log in (valid {hours} h, once), then set a password if you like:\n{link}\n")
    try:
        await mailer.send(Mail(to=user.email, subject="Your tollgate credits", text=text))
    except (OSError, smtplib.SMTPException, RuntimeError) as error:
        log.warning("payment %d: the login mail could not be sent: %s", settled.payment.id, type(error).__name__)
        return False
    return True
