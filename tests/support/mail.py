"""A real SMTP server for the tests (aiosmtpd): what it received, as text."""

from __future__ import annotations

import email
import email.policy


class Inbox:
    """An aiosmtpd handler keeping each delivered message's plain-text body."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.texts.append(message.get_body(("plain",)).get_content())
        return "250 OK"
