"""Outgoing mail: SMTP delivers the login link and never logs it (ATTACK-2026-12-01 M10), senders."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import aiohttp
import pytest

from devkit.embedded import free_port
from gateway.accounts import mail, users
from gateway.core.config import Settings
from tests.support.processes import TOLLGATE, gateway_env, stop, wait_until_up

TOKEN_IN_LINK = re.compile(r"magic-link/verify\?token=([A-Za-z0-9_-]{64})")


async def test_serve_mails_the_link_over_smtp_and_never_logs_it(servers, database, mock_target, smtp_server):
    smtp_port, inbox = smtp_server
    await users.ensure_client(database, email="admin@example.com")
    port = free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_MAIL_SENDER="smtp", TOLLGATE_SMTP_HOST="127.0.0.1",
                      TOLLGATE_SMTP_PORT=str(smtp_port), TOLLGATE_LOG_LEVEL="DEBUG")
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "serve.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", env=env, stdout=log_file,
                                                           stderr=log_file)
            try:
                await wait_until_up(base + "/health", process)
                async with aiohttp.ClientSession() as session:
                    async with session.post(base + "/api/v1/auth/magic-link",
                                            json={"email": "admin@example.com"}) as response:
                        assert response.status == 202
                    for _ in range(100):
                        if inbox.texts:
                            break
                        await asyncio.sleep(0.1)
                    token = TOKEN_IN_LINK.search(inbox.texts[0]).group(1)
                    async with session.post(base + "/api/v1/auth/magic-link/verify",
                                            json={"token": token}) as response:
                        assert response.status == 200  # the mailed link is the real one
            finally:
                await stop(process)
        logged = log_path.read_text(errors="replace")
    assert "serving on" in logged  # the log was written, at DEBUG
    assert token not in logged and "magic-link/verify" not in logged


def test_the_development_sender_writes_to_the_terminal_not_the_log(capsys, caplog):
    sender = mail.sender_for(Settings())
    asyncio.run(sender.send(mail.Mail(to="a@example.com", subject="Link", text="token=SECRET\n")))
    assert "token=SECRET" in capsys.readouterr().out
    assert "SECRET" not in caplog.text


def test_the_mail_sender_setting_takes_log_smtp_or_none():
    assert isinstance(mail.sender_for(Settings(mail_sender="smtp")), mail.SmtpSender)
    assert isinstance(mail.sender_for(Settings(mail_sender="none")), mail.NoSender)
    with pytest.raises(Exception, match="TOLLGATE_MAIL_SENDER"):
        Settings(mail_sender="stdout")


async def test_the_development_sender_is_the_default_and_smtp_is_configurable():
    from gateway.accounts import mail
    from gateway.core.config import Settings

    assert isinstance(mail.sender_for(Settings()), mail.TerminalSender)  # `serve` refuses it: tests/test_cli.py
    assert isinstance(mail.sender_for(Settings(mail_sender="smtp")), mail.SmtpSender)
