"""The embedded default: own PostgreSQL + Redis in a data folder, migrated, an admin, a mock target."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import signal
from pathlib import Path

import asyncpg
from aiohttp import web

from devkit import mock_target
from devkit.fake_payments import serving as fake_payments
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from gateway.accounts import access_tokens, api_keys, users
from gateway.core import migrate
from gateway.core.admin_origin import AdminOrigin
from gateway.core.config import Secret, Settings

ADMIN_EMAIL = "admin@tollgate.local"
DEMO_EMAIL = "demo@tollgate.local"


def _remembered(path: Path, make) -> tuple[str, bool]:
    """The value kept in `path` (readable by its owner only), and whether it was made just now."""
    if path.exists():
        return path.read_text().strip(), False
    value = str(make())
    path.write_text(value)
    path.chmod(0o600)
    return value, True


def _ports(data_dir: Path) -> dict[str, int]:
    """The embedded servers' ports and the admin UI's, kept for the next start (a bookmark stays good)."""
    path = data_dir / "ports.json"
    ports = json.loads(path.read_text()) if path.exists() else {}
    if not {"postgres", "redis", "admin"} <= set(ports):
        ports = {"postgres": free_port(), "redis": free_port(), "admin": free_port(), **ports}
        path.write_text(json.dumps(ports))
    return ports


async def _ensure_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def prepare(settings: Settings) -> tuple[Settings, list[object], dict[str, str]]:
    """Start what is not configured; returns settings pointing at it, servers to stop, facts to print."""
    servers: list[object] = []
    try:
        return await _prepare(settings, servers)
    except BaseException:
        for server in servers:
            server.stop()  # a failed start leaves nothing running behind
        raise


async def _prepare(settings: Settings, servers: list[object]) -> tuple[Settings, list[object], dict[str, str]]:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)
    ports = _ports(data_dir)
    if not settings.admin_listen and not settings.admin_on_main_origin:
        # The admin UI on an origin of its own, as `serve` should run it (decision 0027).
        settings = settings.replace(admin_listen=f"127.0.0.1:{ports['admin']}")
    if not settings.database_url:
        postgres = EmbeddedPostgres(data_dir / "postgres", ports["postgres"])
        postgres.start()
        servers.append(postgres)
        await _ensure_database(postgres.url, "tollgate")
        settings = settings.replace(database_url=Secret(postgres.url.rsplit("/", 1)[0] + "/tollgate"))
    if not settings.redis_url:
        redis = EmbeddedRedis(data_dir / "redis", ports["redis"])
        redis.start()
        servers.append(redis)
        settings = settings.replace(redis_url=Secret(redis.url))
    if not settings.jwt_secret:
        settings = settings.replace(jwt_secret=Secret(_remembered(data_dir / "jwt_secret",
                                                                  lambda: secrets.token_urlsafe(48))[0]))
    await migrate.apply(settings.database_url.value)
    password, password_new = _remembered(data_dir / "admin_password", lambda: secrets.token_urlsafe(12))
    demo_password, demo_password_new = _remembered(data_dir / "demo_password", lambda: secrets.token_urlsafe(12))
    connection = await asyncpg.connect(settings.database_url.value)
    try:
        await users.ensure_admin(connection, email=ADMIN_EMAIL, password=password)
        await connection.execute(SPEC_MODEL_PRICES)
        demo_id = await users.ensure_client(connection, email=DEMO_EMAIL)
        await connection.execute(SET_DEMO_PASSWORD, demo_id, users.hash_password(demo_password))
        now = dt.datetime.now(dt.timezone.utc)
        # 100 credits to try purchases with; the key makes it once per data folder, not per start.
        await _grant_demo_credits(connection, demo_id, now)
        issued = await access_tokens.issue(connection, user_id=demo_id, hours=24, scope="full", now=now)
        api_key = await api_keys.create(connection, user_id=demo_id, name="dev demo", allowed_models=[],
                                        ip_allowlist=[], rpm_limit=0, tpm_limit=0, now=now, expires_at=None)
    finally:
        await connection.close()
    # A password is shown once, when it is generated; later starts name the file that keeps it.
    return settings, servers, {"admin_password": password if password_new else "",
                               "demo_password": demo_password if demo_password_new else "",
                               "admin_password_file": str(data_dir / "admin_password"),
                               "demo_password_file": str(data_dir / "demo_password"),
                               "demo_token": issued.token, "demo_api_key": api_key.key}


SET_DEMO_PASSWORD = "UPDATE users SET password_hash = $2 WHERE id = $1"
# The billing-CRM spec's example models (assumed: its OpenAI, Anthropic and Gemini examples of the
# time), priced at their list prices per million tokens so the spec's own client works offline
# against the mock; a price set earlier is kept.
SPEC_MODEL_PRICES = """
INSERT INTO model_prices (model, provider, input_per_mtok_micro, output_per_mtok_micro, cached_input_per_mtok_micro,
                          max_output_tokens) VALUES
    ('gpt-4', 'openai', 30000000, 60000000, 30000000, 8192),
    ('gpt-3.5-turbo', 'openai', 500000, 1500000, 500000, 4096),
    ('claude-3-opus-20240229', 'anthropic', 15000000, 75000000, 1500000, 4096),
    ('claude-3-sonnet-20240229', 'anthropic', 3000000, 15000000, 300000, 4096),
    ('gemini-pro', 'gemini', 500000, 1500000, 500000, 8192)
ON CONFLICT (model) DO NOTHING"""


async def _grant_demo_credits(connection: asyncpg.Connection, user_id: int, now: dt.datetime) -> None:
    import ledger

    async with connection.transaction():
        await ledger.move(connection, key="dev:demo-credits", debit=await ledger.system_id(connection, "adjustments"),
                          credit=await ledger.user_account(connection, user_id), amount_micro=100_000_000,
                          kind="adjustment", now=now, user_id=user_id, description="dev demo credits")


def mock_ai_settings(mock_url: str, unset: dict[str, bool]) -> dict[str, str]:
    paths = {"openai": "/openai/v1", "anthropic": "/anthropic", "gemini": "/gemini"}
    changes: dict[str, str] = {}
    for provider, is_unset in unset.items():
        if is_unset:
            changes[f"{provider}_base_url"] = mock_url + paths[provider]
            changes[f"{provider}_api_keys"] = f"sk-mock-dev-{provider}"
    return changes


def metrics_curl(settings: Settings) -> str:
    """The curl command that reads /metrics wherever this configuration serves it."""
    base = settings.public_url
    if settings.metrics_port:
        base = f"http://{settings.metrics_host}:{settings.metrics_port}"
    # The token stays in the environment; the banner names the variable, not the secret.
    token = ' -H "Authorization: Bearer $TOLLGATE_METRICS_TOKEN"' if settings.metrics_token else ""
    return f"curl -s {base}/metrics{token}"


def _password_line(email: str, password: str, path: str) -> str:
    if password:
        return f"{email} / {password}   (generated now, shown once; kept in {path})"
    return f"{email} / the password in {path}"


def _login_body(email: str, password_file: str) -> str:
    """A JSON login body as one double-quoted shell word that reads the password from its file."""
    return f'"{{\\"email\\": \\"{email}\\", \\"password\\": \\"$(cat {password_file})\\"}}"'


def payments_banner(settings: Settings, demo_jwt: str, fake_urls: dict[str, str]) -> str:
    """The lines that buy credits, play the provider's callback and show the credits arrive."""
    base = settings.public_url
    if "stripe" not in fake_urls or "robokassa" not in fake_urls:
        return ""
    guest = ('{"credits": "5", "provider": "robokassa", "email": "guest@example.com"}')
    return f"""
Buy credits (fake Stripe, CryptoCloud and Robokassa on loopback; nothing leaves this machine):
  curl -s {base}/api/v1/currency/purchase -H "Authorization: Bearer $({demo_jwt})" -H 'Content-Type: application/json' -d '{{"credits": "10", "provider": "stripe"}}'
  curl -s -X POST {fake_urls["stripe"]}/_fake/pay-latest   # plays Stripe: pays the newest session and sends its signed webhook
  curl -s '{base}/api/v1/currency/transactions?type=deposit' -H "Authorization: Bearer $({demo_jwt})"   # the 10 credits arrived
  curl -s "$(curl -s {base}/api/v1/currency/purchase -H 'Content-Type: application/json' -d '{guest}' | sed -E 's/.*"payment_url":"([^"]+)".*/\\1/')"   # a guest pays on the fake Robokassa page: ResultURL answers OK{{InvId}}, the login link is mailed here
"""


def browser_banner(settings: Settings, token: str) -> str:
    """The lines that open the target in a browser: a one-time link (the token stays in headers)."""
    base = settings.public_url
    make_link = (f"curl -s -X POST {base}/api/v1/proxy/session/link -H 'X-Access-Token: {token}' "
                 "-H 'X-Device-ID: laptop-1' -H 'Content-Type: application/json' -d '{\"path\": \"/browser\"}'")
    link = f"$({make_link} | sed -E 's/.*\"url\":\"([^\"]+)\".*/\\1/')"
    return f"""
Open the target in a browser (decision 0020: a one-time link, {settings.browser_link_ttl_s} s and single use, sets an HttpOnly session cookie):
  {make_link}   # open its "url" in the system browser
  curl -si "{link}"   # what the browser gets: 303 to the page, with the cookie
  curl -sL -b '' "{link}" | head -4   # the page, through the cookie alone
"""


def banner(settings: Settings, facts: dict[str, str], fake_urls: dict[str, str] | None = None) -> str:
    base = settings.public_url
    token, key = facts["demo_token"], facts["demo_api_key"]
    ai_upstreams = "mock" if "mock" in settings.openai_api_keys.value else "configured"
    # Passwords are read from their files by the lines themselves, so no start prints them again
    # (decision 0014), and a login is inlined into each line, which works on its own (JWTs last 30 min).
    admin_body = _login_body(ADMIN_EMAIL, facts["admin_password_file"])
    demo_body = _login_body(DEMO_EMAIL, facts["demo_password_file"])
    demo_jwt = (f"curl -s {base}/api/v1/auth/login -H 'Content-Type: application/json' -d {demo_body} "
                "| sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/'")
    admin_line = _password_line(ADMIN_EMAIL, facts["admin_password"], facts["admin_password_file"])
    demo_line = _password_line(DEMO_EMAIL, facts["demo_password"], facts["demo_password_file"])
    return f"""
tollgate is running (embedded default; data in {settings.data_dir})

  gateway      {base}
  target       {settings.target_url}   (mock upstream)
  admin login  {admin_line}
  admin UI     {AdminOrigin.from_settings(settings).origin}/admin/   (its own origin; log in there as {ADMIN_EMAIL})
  demo user    {demo_line}   (100 credits to spend)
  demo token   {token}   (24 h, scope full)
  demo API key {key}   (AI routes; upstreams: {ai_upstreams})

Try it:
  curl -s {base}/health
  curl -s {base}/api/v1/proxy/status -H 'X-Access-Token: {token}' -H 'X-Device-ID: laptop-1'
  curl -si {base}/api/v1/proxy/ -H 'X-Access-Token: {token}' -H 'X-Device-ID: laptop-1'
  curl -s {base}/api/v1/proxy/echo/hello?x=1 -H 'X-Access-Token: {token}' -H 'X-Device-ID: laptop-1'
  curl -s {base}/api/v1/proxy/echo/hello -H 'X-Access-Token: {token}' -H 'X-Device-ID: phone-2'   # 409 device_conflict
  curl -s {base}/api/v1/auth/login -H 'Content-Type: application/json' -d {admin_body}
  curl -s {base}/api/v1/bundles
  curl -s {base}/api/v1/tokens/purchase -H "Authorization: Bearer $({demo_jwt})" -H 'Content-Type: application/json' -d '{{"duration_hours": 1}}'
  curl -s {base}/api/v1/currency/transactions -H "Authorization: Bearer $({demo_jwt})"
  curl -s {base}/openai/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{{"role": "user", "content": "Hello"}}]}}'
  curl -sN {base}/anthropic/v1/messages -H 'x-api-key: {key}' -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' -d '{{"model": "claude-haiku-4-5", "max_tokens": 10, "stream": true, "messages": [{{"role": "user", "content": "Hello"}}]}}'
  curl -s {base}/gemini/v1beta/models/gemini-2.0-flash:generateContent -H 'x-goog-api-key: {key}' -H 'Content-Type: application/json' -d '{{"contents": [{{"parts": [{{"text": "Hello"}}]}}]}}'
  curl -s {base}/api/v1/balance -H 'Authorization: Bearer {key}'
  {metrics_curl(settings)} | grep tollgate_http_requests
{payments_banner(settings, demo_jwt, fake_urls or {})}{browser_banner(settings, token)}
SDKs work unchanged, e.g. OpenAI(base_url="{base}/openai/v1", api_key="{key}"),
Anthropic(base_url="{base}/anthropic", ...), genai.Client(http_options={{"base_url": "{base}/gemini"}}, ...).

Press Ctrl-C to stop (the embedded PostgreSQL and Redis stop with it).
"""


async def run(settings: Settings) -> None:
    settings, servers, facts = await prepare(settings)
    runners: list[web.AppRunner] = []
    try:
        # The mock serves the HTML target and the three AI APIs: whatever is not configured uses it.
        ai_unset = {p: not getattr(settings, f"{p}_api_keys") for p in ("openai", "anthropic", "gemini")}
        if not settings.target_url or any(ai_unset.values()):
            mock_port = free_port()
            mock_url = f"http://127.0.0.1:{mock_port}"
            runner = web.AppRunner(mock_target.build_app(public_base_url=mock_url), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", mock_port).start()
            runners.append(runner)
            settings = settings.replace(target_url=settings.target_url or mock_url,
                                        **mock_ai_settings(mock_url, ai_unset))
        settings, fake_urls = await fake_payments.start(settings, runners)
        from gateway.app import create_app
        from gateway.core.connections import GatewayRunner
        from gateway.server import start_sites

        gateway_runner = GatewayRunner(create_app(settings))
        await gateway_runner.setup()
        runners.append(gateway_runner)
        await start_sites(gateway_runner, settings, reuse_port=False)
        print(banner(settings, facts, fake_urls), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        for server in servers:
            server.stop()


def main(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    import uvloop

    uvloop.run(run(settings))
