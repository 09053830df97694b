"""Outgoing mail behind one small interface: the development terminal, an SMTP server, or none.

A mail may hold a login link: it never goes to the log, at any level (decision 0014).
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from gateway.core.config import Settings

@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str


class Sender(Protocol):
    async def send(self, mail: Mail) -> None: ...


class TerminalSender:
    """The development run (`python -m devkit dev`) only (TOLLGATE_MAIL_SENDER=log): the mail is
    printed to the terminal that runs
    it, on stdout, not through logging; `tollgate serve` refuses to start with this sender."""

    async def send(self, mail: Mail) -> None:
        print(f"\n--- mail (development: printed, not sent) to {mail.to}: {mail.subject}\n{mail.text}---",
              flush=True)


class NoSender:
    """TOLLGATE_MAIL_SENDER=none: nothing is mailed; the API refuses magic-link requests first."""

    async def send(self, mail: Mail) -> None:
        raise RuntimeError("mail is turned off (TOLLGATE_MAIL_SENDER=none)")


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
    if settings.mail_sender == "smtp":
        return SmtpSender(settings)
    return NoSender() if settings.mail_sender == "none" else TerminalSender()
