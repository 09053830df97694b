"""The gateway under test: its settings, a mail outbox to read, and the test server that runs it as `serve` does."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from gateway.core.config import Secret, Settings
from gateway.core.connections import GatewayRunner
from tests.support.database import Servers

JWT_SECRET = "test-secret-" + "x" * 40


def make_settings(servers: Servers, target_url: str, port: int, **changes) -> Settings:
    settings = Settings(
        database_url=Secret(servers.database_url), redis_url=Secret(servers.redis_url),
        host="127.0.0.1", port=port, target_url=target_url,
        public_url=f"http://127.0.0.1:{port}", jwt_secret=Secret(JWT_SECRET),
        session_flush_interval_s=3600, upstream_read_timeout_s=5.0,
    )
    return settings.replace(**changes)


class Outbox:
    """A mail sender that keeps what it was given, for tests to read."""

    def __init__(self) -> None:
        self.sent: list = []

    async def send(self, mail) -> None:
        self.sent.append(mail)


class GatewayTestServer(TestServer):
    """aiohttp's test server running the gateway the way `tollgate serve` does (GatewayRunner)."""

    async def _make_runner(self, **kwargs) -> GatewayRunner:
        return GatewayRunner(self.app, **kwargs)
