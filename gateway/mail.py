"""Outgoing mail behind one small interface: the log (development) or an SMTP server."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from gateway.config import Settings

log = logging.getLogger("tollgate.mail")


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str


class Sender(Protocol):
    async def send(self, mail: Mail) -> None: ...


class LogSender:
    """Development default: the message goes to the log (it holds a login link; never use in production)."""

    async def send(self, mail: Mail) -> None:
        log.warning("mail (log sender, not delivered) to=%s subject=%r\n%s", mail.to, mail.subject, mail.text)


class SmtpSender:
    """Delivers through an SMTP server with the standard library, off the event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, mail: Mail) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._send, mail)

    def _send(self, mail: Mail) -> None:
        settings = self._settings
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = settings.mail_from, mail.to, mail.subject
        message.set_content(mail.text)
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password.value)
            smtp.send_message(message)


def sender_for(settings: Settings) -> Sender:
    return SmtpSender(settings) if settings.mail_sender == "smtp" else LogSender()
