"""The guest's login mail: over a real SMTP server (aiosmtpd), its link logs in; a mail server that
is down costs the mail, never the credit."""

from __future__ import annotations

import datetime as dt
import re


from devkit.embedded import free_port
from gateway.accounts.mail import SmtpSender
from gateway.payments import notices, store
from gateway.payments.settlement import Settled
from tests.support.payments import buy

TOKEN = re.compile(r"magic-link/verify\?token=([A-Za-z0-9_-]{64})")


async def paid_guest_payment(gateway, database) -> Settled:
    payment = await buy(gateway, credits="10", provider="robokassa", email="guest@example.com")
    await gateway.session.get(payment["payment_url"])
    paid = await store.get(database, payment["payment_id"])
    assert paid is not None and paid.status == "paid"
    return Settled(paid, True, paid.credits_micro, paid.guest_email)


async def test_the_login_mail_goes_out_over_smtp_and_its_link_logs_in(pay_gateway, database, smtp_server):
    port, inbox = smtp_server
    settled = await paid_guest_payment(pay_gateway, database)
    settings = pay_gateway.settings.replace(mail_sender="smtp", smtp_host="127.0.0.1", smtp_port=port)
    assert await notices.mail_guest(database, settings, SmtpSender(settings), settled, dt.datetime.now(dt.timezone.utc))
    assert "10 credits are in your tollgate account" in inbox.texts[0]
    token = TOKEN.search(inbox.texts[0]).group(1)
    response = await pay_gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})
    assert response.status == 200


async def test_a_mail_server_that_is_down_costs_the_mail_not_the_credit(pay_gateway, database):
    settled = await paid_guest_payment(pay_gateway, database)
    settings = pay_gateway.settings.replace(mail_sender="smtp", smtp_host="127.0.0.1", smtp_port=free_port())
    sent = await notices.mail_guest(database, settings, SmtpSender(settings), settled, dt.datetime.now(dt.timezone.utc))
    assert not sent
    assert (await store.get(database, settled.payment.id)).status == "paid"


async def test_nothing_is_mailed_when_mail_is_off_or_the_payer_had_an_account(pay_gateway, database, outbox):
    settled = await paid_guest_payment(pay_gateway, database)
    off = pay_gateway.settings.replace(mail_sender="none")
    assert not await notices.mail_guest(database, off, outbox, settled, dt.datetime.now(dt.timezone.utc))
    member = Settled(settled.payment, True, settled.credited_micro, None)
    assert not await notices.mail_guest(database, pay_gateway.settings, outbox, member,
                                        dt.datetime.now(dt.timezone.utc))
