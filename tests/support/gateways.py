"""The gateway under test: its settings, a mail outbox to read, and the test server that runs it as `serve` does."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from gateway.core.admin_origin import is_admin_path, parse_listen
from gateway.core.app_keys import SETTINGS
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


class GatewayTestClient(TestClient):
    """aiohttp's test client; in front of a gateway whose admin UI has a listener of its own
    (TOLLGATE_ADMIN_LISTEN, decision 0027), paths under /admin go to that listener, as a browser
    following the admin UI's address would, and every other path to the main port."""

    @property
    def admin_base(self) -> str:
        """http://host:port of the admin UI: its own listener, else the main port."""
        app = getattr(self.server, "app", None)
        settings = app.get(SETTINGS) if app is not None else None
        if settings is None or not settings.admin_listen:
            return str(self.server.make_url("")).rstrip("/")
        host, port = parse_listen(settings.admin_listen)
        return f"http://{host}:{port}"

    def make_url(self, path) -> URL:
        if isinstance(path, str) and is_admin_path(path.partition("?")[0]):
            return URL(self.admin_base + path)
        return super().make_url(path)
