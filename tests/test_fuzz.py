"""Hypothesis fuzz of the whole HTTP surface (attack of 2026-12-01, "done when"): the JSON API, the
proxy and the AI routes get hostile paths, methods, headers, encodings and bodies over raw
sockets, and must answer every one without a 5xx and in the documented error shape; the target
behind the proxy must never see a request the gateway did not forward on purpose, or a body other
than the client's bytes; and the books balance with no hold left open at the end.

The gateway, a recording target and the mock AI providers run on loopback in a thread of their
own, so hypothesis drives them with plain blocking sockets. Examples are derandomized (the same
inputs every run, so CI is stable); TOLLGATE_FUZZ_RANDOM=1 explores new ones, and
TOLLGATE_FUZZ_EXAMPLES=N sets how many each test tries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings, strategies as st

import ledger
from devkit import mock_target as target_mock
from devkit.fake_payments import cryptocloud as fake_cryptocloud, robokassa as fake_robokassa, stripe as fake_stripe
from devkit.embedded import free_port
from gateway.accounts import access_tokens, users
from gateway.app import create_app
from gateway.core.connections import GatewayRunner
from tests.support.accounts import deposit
from tests.support.database import RESET_DATABASE, SEED_BUNDLES, SEED_PRICES
from tests.support.gateways import Outbox, make_settings
from tests.support.malformed import MALFORMED
from tests.support.payments import Fakes, new_fakes

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("TOLLGATE_FUZZ_RANDOM") != "1",
                database=None, suppress_health_check=list(HealthCheck))
TARGET_BASE = "/app"
PASSWORD = "correct horse battery"
AI_PREFIXES = {"/openai/": "openai", "/anthropic/": "anthropic", "/gemini/": "gemini"}
CRM_PATHS = ("/api/v1/generate", "/api/v1/balance")


# -- the servers ---------------------------------------------------------------------------------

@dataclass
class Received:
    raw_path: str
    headers: dict[str, str]
    body: bytes


class RecordingTarget:
    """A target that answers 200 to anything and notes what reached it and what should not have."""

    def __init__(self) -> None:
        self.received: dict[str, Received] = {}  # by the client's X-Fuzz-Id
        self.violations: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        raw_path = request.raw_path
        if "x-forwarded-for" not in request.headers:
            self.violations.append(f"a request the gateway did not forward: {request.method} {raw_path!r}")
        path = urllib.parse.unquote(raw_path.split("?", 1)[0])
        if not raw_path.startswith(TARGET_BASE + "/") or any(s in (".", "..") for s in path.split("/")):
            self.violations.append(f"outside the base path or with dot segments: {raw_path!r}")
        fuzz_id = request.headers.get("x-fuzz-id")
        if fuzz_id:
            self.received[fuzz_id] = Received(raw_path, dict(request.headers), body)
        return web.Response(text="ok")


class Live:
    """The running stack, as the tests reach it from their own thread."""

    def __init__(self, port: int, loop: asyncio.AbstractEventLoop, target: RecordingTarget,
                 pool: asyncpg.Pool) -> None:
        self.port, self.loop, self.target, self.pool = port, loop, target, pool
        self.auth: dict[str, list[tuple[bytes, bytes]]] = {}
        self.user_id = 0
        self.counter = 0

    def __repr__(self) -> str:  # hypothesis prints the fixture with each failing example
        return f"Live(port={self.port})"

    def run(self, coroutine, timeout_s: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def fresh_proxy_auth(self) -> list[tuple[bytes, bytes]]:
        """A new access token: the fuzz's own revoke calls may have ended the last one."""
        issued = self.run(access_tokens.issue(self.pool, user_id=self.user_id, hours=24, scope="full",
                                       now=dt.datetime.now(dt.timezone.utc)))
        return [(b"X-Access-Token", issued.token.encode()), (b"X-Device-ID", b"fuzz-device")]

    def next_id(self) -> str:
        self.counter += 1
        return f"fuzz-{self.counter}"


async def _site(app: web.Application, port: int, runner_class=web.AppRunner, **runner_kwargs) -> web.AppRunner:
    runner = runner_class(app, access_log=None, **runner_kwargs)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _start(servers, target: RecordingTarget) -> tuple[Live, list[web.AppRunner]]:
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=4)
    for statement in (RESET_DATABASE, SEED_BUNDLES, SEED_PRICES):
        await pool.execute(statement)
    target_app = web.Application()
    target_app.router.add_route("*", "/{tail:.*}", target.handle)
    target_port, mock_port, port = free_port(), free_port(), free_port()
    mock = f"http://127.0.0.1:{mock_port}"
    runners = [await _site(target_app, target_port, auto_decompress=False),
               await _site(target_mock.build_app(public_base_url=mock), mock_port)]
    fakes = await _payment_fakes(runners, port)
    settings_ = make_settings(
        servers, f"http://127.0.0.1:{target_port}{TARGET_BASE}", port,
        openai_base_url=f"{mock}/openai/v1", openai_api_keys="sk-mock", anthropic_base_url=f"{mock}/anthropic",
        anthropic_api_keys="sk-mock", gemini_base_url=f"{mock}/gemini", gemini_api_keys="mock-gemini",
        ip_limit_per_min=0, plan_limits_per_min={"free": 0, "premium": 0, "enterprise": 0},
        ai_read_timeout_s=5.0, usage_flush_interval_s=0.05, **fakes.settings())
    app = create_app(settings_, mailer=Outbox())
    runners.append(await _site(app, port, GatewayRunner))  # as `tollgate serve` runs it
    live = Live(port, asyncio.get_running_loop(), target, pool)
    await _seed_people(live)
    return live, runners


async def _payment_fakes(runners: list[web.AppRunner], gateway_port: int) -> Fakes:
    """The fake payment providers, so purchases and callbacks reach real provider code paths."""
    stripe, cryptocloud, robokassa = new_fakes()
    urls = {}
    for name, fake, build in (("stripe", stripe, fake_stripe.build_app), ("cryptocloud", cryptocloud,
                              fake_cryptocloud.build_app), ("robokassa", robokassa, fake_robokassa.build_app)):
        port = free_port()
        runners.append(await _site(build(fake), port))
        urls[name] = fake.public_base_url = f"http://127.0.0.1:{port}"
    fakes = Fakes(stripe, cryptocloud, robokassa, urls)
    fakes.point_at(f"http://127.0.0.1:{gateway_port}")
    return fakes


async def _seed_people(live: Live) -> None:
    import aiohttp

    pool = live.pool
    await users.ensure_admin(pool, email="admin@fuzz.test", password=PASSWORD)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{live.port}") as session:
        async with session.post("/api/v1/auth/register", json={
                "email": "client@fuzz.test", "username": "client", "password": PASSWORD,
                "full_name": "Fuzz Client"}) as response:
            assert response.status == 201, await response.text()
            client_id = live.user_id = (await response.json())["id"]
        await deposit(pool, client_id, 1000)
        jwts = {}
        for who in ("admin", "client"):
            async with session.post("/api/v1/auth/login", json={"email": f"{who}@fuzz.test",
                                                                "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
                jwts[who] = (await response.json())["access_token"]
        async with session.post("/api/v1/keys", json={"name": "fuzz"},
                                headers={"Authorization": f"Bearer {jwts['client']}"}) as response:
            assert response.status == 201, await response.text()
            key = (await response.json())["key"]
    issued = await access_tokens.issue(pool, user_id=client_id, hours=24, scope="full",
                                now=dt.datetime.now(dt.timezone.utc))
    async with aiohttp.ClientSession(f"http://127.0.0.1:{live.port}") as session:
        async with session.post("/api/v1/proxy/session", headers={"X-Access-Token": issued.token,
                                                                  "X-Device-ID": "fuzz-device"}) as response:
            assert response.status == 201, await response.text()
            cookie = response.cookies["tollgate_session"].value
    live.auth = {
        "none": [],
        "client": [(b"Authorization", f"Bearer {jwts['client']}".encode())],
        "admin": [(b"Authorization", f"Bearer {jwts['admin']}".encode())],
        "key": [(b"Authorization", f"Bearer {key}".encode())],
        "x-api-key": [(b"x-api-key", key.encode())],
        "goog": [(b"x-goog-api-key", key.encode())],
        "proxy": [(b"X-Access-Token", issued.token.encode()), (b"X-Device-ID", b"fuzz-device")],
        "cookie": [(b"Cookie", b"tollgate_session=" + cookie.encode()),
                   (b"Origin", f"http://127.0.0.1:{live.port}".encode())],
    }


class Noted(logging.Handler):
    """Every log record with a traceback, or at ERROR and above, from any logger while the fuzz runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(f"{record.name} {record.levelname} {record.getMessage()[:300]}"
                                f"{' (with a traceback)' if record.exc_info else ''}")


@pytest.fixture(scope="module")
def noted():
    handler = Noted()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def live(servers, noted):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-servers", daemon=True)
    thread.start()
    target = RecordingTarget()
    live, runners = asyncio.run_coroutine_threadsafe(_start(servers, target), loop).result(60)
    yield live
    live.run(_finish(live, runners), 120)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


async def _finish(live: Live, runners: list[web.AppRunner]) -> None:
    # Every hold the fuzz placed is resolved (posted or voided), and the books balance.
    open_holds = 0
    for _ in range(100):
        open_holds = await live.pool.fetchval(
            "SELECT count(*) FROM transfers p WHERE p.phase = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)")
        if not open_holds:
            break
        await asyncio.sleep(0.1)
    for runner in reversed(runners):
        await runner.cleanup()
    report = await ledger.reconcile(live.pool)
    await live.pool.close()
    assert open_holds == 0, f"{open_holds} hold(s) left open"
    assert report.ok, report.text()
    assert live.target.violations == [], live.target.violations[:5]


# -- one request over a raw socket ---------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def send(live: Live, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"",
         *, length: bool = True) -> Reply:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
        response.begin()
        return Reply(response.status, response.headers, response.read())


def shape_of(path: bytes) -> str:
    text = path.decode("latin-1")
    for prefix, provider in AI_PREFIXES.items():
        if text.startswith(prefix):
            return provider
    if text.split("?", 1)[0] in CRM_PATHS:
        return "crm"
    return "api"


def assert_answered_well(reply: Reply, shape: str, method: bytes = b"GET") -> None:
    """No 5xx; an error in the documented shape of its route; never a version banner."""
    assert reply.status < 500, (reply.status, reply.body[:300])
    assert "aiohttp" not in reply.headers.get("Server", ""), reply.headers.get("Server")
    if reply.status < 400 or method == b"HEAD":
        return
    assert reply.headers.get_content_type() == "application/json", (reply.status, reply.body[:200])
    body = reply.json()
    if isinstance(body.get("error"), dict) and body["error"].get("code") == "malformed_request":
        shape = "api"  # refused by the HTTP parser, before any route is known (decision 0013)
    if shape == "api":
        error = body["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), body
        assert error["request_id"] == reply.headers.get("X-Request-Id", error["request_id"]), body
    elif shape == "crm":
        assert body["error"] is True and isinstance(body["code"], str) and isinstance(body["message"], str), body
    elif shape == "openai":
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str), body
    elif shape == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["message"], str), body
    else:
        assert isinstance(body["error"]["code"], int) and isinstance(body["error"]["status"], str), body


# -- strategies ----------------------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "\x00", "a\x00b", "\u202e", "\u200b", "٣", "1e9",
                                                        "NaN", "-1", "0", "x" * 5000, "../../etc",
                                                        "'; DROP TABLE users;--", "<script>", "${jndi:x}"]))
NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
                   st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, 1e308]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)), max_leaves=12)


def objects(*names: str) -> st.SearchStrategy[dict]:
    """Objects with (some of) a route's own fields, each of any JSON type, plus stray keys."""
    return st.builds(lambda known, extra: {**extra, **known},
                     st.fixed_dictionaries({}, optional={name: JSON for name in names}),
                     st.dictionaries(TEXT, JSON, max_size=2))


def duplicate_keys(body: dict) -> bytes:
    """The same object with its first key repeated under another value (parsers disagree on these)."""
    if not body:
        return b'{"a":1,"a":2}'
    name = next(iter(body))
    return json.dumps(body)[:-1].encode() + b"," + json.dumps(name).encode() + b':"other"}'


@st.composite
def bodies(draw, shape: st.SearchStrategy[dict]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Bytes of a body and the headers that describe them: JSON, broken JSON, or compressed."""
    body = draw(shape)
    text = json.dumps(body).encode()
    kind = draw(st.sampled_from(["json", "json", "json", "duplicate", "truncated", "binary", "invalid-utf8",
                                 "gzip", "deflate", "corrupt-gzip", "corrupt-deflate", "br", "bogus-coding",
                                 "empty", "array", "nested"]))
    headers = [(b"Content-Type", draw(st.sampled_from([b"application/json", b"application/json; charset=utf-8",
                                                        b"text/plain", b"application/x-www-form-urlencoded"])))]
    if kind == "duplicate":
        text = duplicate_keys(body)
    elif kind == "truncated":
        text = text[: max(1, len(text) // 2)]
    elif kind == "binary":
        text = draw(st.binary(max_size=64))
    elif kind == "invalid-utf8":
        text = b'{"email": "\xff\xfe", "name": "\xc3"}'
    elif kind in ("gzip", "deflate"):
        text = gzip.compress(text) if kind == "gzip" else zlib.compress(text)
        headers.append((b"Content-Encoding", kind.encode()))
    elif kind.startswith("corrupt-"):
        text = (b"\x1f\x8b\x08\x00" if kind == "corrupt-gzip" else b"x\x9c") + draw(st.binary(max_size=32))
        headers.append((b"Content-Encoding", kind.split("-")[1].encode()))
    elif kind == "br":
        text = draw(st.binary(max_size=32))
        headers.append((b"Content-Encoding", b"br"))
    elif kind == "bogus-coding":
        headers.append((b"Content-Encoding", draw(st.sampled_from([b"zstd", b"gzip, gzip", b"identity",
                                                                     b"x-unknown", b"GZIP"]))))
    elif kind == "empty":
        text = b""
    elif kind == "array":
        text = b"[" + text + b"]"
    elif kind == "nested":
        text = b"[" * 3000 + b"]" * 3000
    return text, headers


ID = st.one_of(st.integers(min_value=-5, max_value=2**64).map(lambda n: str(n).encode()),
               st.sampled_from([b"0", b"1e2", b"+1", b"0x1", b"%00", b"%2e%2e", b"\xd9\xa1", b"%F0%9F%98%80",
                                b"9" * 3000, b"abc", b"1;2", b"1%2F2"]))

# (method, path with {id}, the fields it reads, who calls it)
ENDPOINTS = [
    (b"POST", b"/api/v1/auth/register", ("email", "username", "password", "full_name", "referral_code"), "none"),
    (b"POST", b"/api/v1/auth/login", ("email", "password"), "none"),
    (b"POST", b"/api/v1/auth/refresh", ("refresh_token",), "none"),
    (b"POST", b"/api/v1/auth/logout", ("refresh_token",), "none"),
    (b"GET", b"/api/v1/auth/me", (), "client"),
    (b"POST", b"/api/v1/auth/magic-link", ("email",), "none"),
    (b"POST", b"/api/v1/auth/magic-link/verify", ("token",), "none"),
    (b"GET", b"/api/v1/currency/transactions?skip={id}&limit={id}&type={id}", (), "client"),
    (b"POST", b"/api/v1/tokens/purchase", ("duration_hours", "scope"), "client"),
    (b"GET", b"/api/v1/tokens/my-tokens?active_only={id}&skip={id}", (), "client"),
    (b"DELETE", b"/api/v1/tokens/{id}", (), "client"),
    (b"GET", b"/api/v1/bundles/{id}", (), "none"),
    (b"POST", b"/api/v1/bundles/{id}/purchase", (), "client"),
    (b"POST", b"/api/v1/keys", ("name", "allowed_models", "ip_allowlist", "rpm_limit", "tpm_limit",
                                "expires_at", "expires_in_days"), "client"),
    (b"DELETE", b"/api/v1/keys/{id}", (), "client"),
    (b"POST", b"/api/v1/admin/tokens", ("email", "user_id", "hours", "scope"), "admin"),
    (b"DELETE", b"/api/v1/admin/tokens/{id}", (), "admin"),
    (b"POST", b"/api/v1/admin/users/{id}/adjust", ("credits", "reason"), "admin"),
    (b"GET", b"/api/v1/admin/users?q={id}&role={id}&skip={id}&limit={id}", (), "admin"),
    (b"PATCH", b"/api/v1/admin/users/{id}", ("is_active", "role", "plan", "manager_id"), "admin"),
    (b"GET", b"/api/v1/admin/users/{id}/tokens", (), "admin"),
    (b"POST", b"/api/v1/admin/tokens/{id}/revoke", (), "admin"),
    (b"GET", b"/api/v1/admin/audit?skip={id}&action={id}", (), "admin"),
    (b"POST", b"/api/v1/admin/bundles", ("name", "description", "token_count", "duration_hours", "price",
                                         "is_active"), "admin"),
    (b"PATCH", b"/api/v1/admin/bundles/{id}", ("name", "description", "price", "is_active"), "admin"),
    (b"PUT", b"/api/v1/admin/prices/{id}", ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                                            "provider", "max_output_tokens"), "admin"),
    (b"POST", b"/api/v1/currency/purchase", ("credits", "bundle_id", "provider", "currency", "email"), "client"),
    (b"POST", b"/api/v1/currency/purchase", ("credits", "bundle_id", "provider", "currency", "email"), "none"),
    (b"GET", b"/api/v1/payments?skip={id}&limit={id}&status={id}", (), "client"),
    (b"GET", b"/api/v1/payments/{id}", (), "client"),
    (b"GET", b"/api/v1/payments/{id}", (), "admin"),
    (b"GET", b"/api/v1/payments/return/{id}", (), "none"),
    (b"POST", b"/api/v1/webhooks/stripe", ("id", "type", "data", "object"), "none"),
    (b"POST", b"/api/v1/webhooks/cryptocloud", ("invoice_id", "token", "status", "order_id", "invoice_info"), "none"),
    (b"POST", b"/api/v1/webhooks/robokassa/result", ("OutSum", "InvId", "SignatureValue", "Shp_item"), "none"),
    (b"GET", b"/api/v1/webhooks/robokassa/result?OutSum={id}&InvId={id}&SignatureValue={id}&Shp_a={id}", (), "none"),
    (b"POST", b"/api/v1/auth/password", ("password", "current_password"), "client"),
    (b"POST", b"/api/v1/proxy/session", (), "proxy"),
    (b"POST", b"/api/v1/proxy/session/link", ("path",), "proxy"),
    (b"GET", b"/api/v1/proxy/session/link?code={id}", (), "none"),
    (b"DELETE", b"/api/v1/proxy/session", (), "cookie"),
]

MESSAGES = st.one_of(JSON, st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", 1]),
                                                           "content": st.one_of(TEXT, JSON)}), max_size=3))
MODEL = st.one_of(st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3-mini", "claude-haiku-4-5", "gemini-2.0-flash",
                                   "text-embedding-3-small", "../files", "gpt-4o-mini\x00", "models/x"]), TEXT)
LIMIT = st.one_of(st.integers(min_value=-3, max_value=40), NUMBER, TEXT, st.none())
AI_BODY = st.builds(
    lambda model, messages, limit, stream, extra: {"model": model, "messages": messages, "max_tokens": limit,
                                                   "stream": stream, **extra},
    MODEL, MESSAGES, LIMIT, st.one_of(st.booleans(), JSON),
    st.dictionaries(st.sampled_from(["n", "stream_options", "tools", "input", "prompt", "contents",
                                     "generationConfig", "max_completion_tokens", "system", "previous_response_id"]),
                    JSON, max_size=3))
GEMINI_BODY = st.builds(lambda contents, config: {"contents": contents, "generationConfig": config},
                        st.one_of(JSON, st.just([{"parts": [{"text": "hi"}]}])),
                        st.one_of(JSON, st.fixed_dictionaries({"maxOutputTokens": LIMIT})))
AI_ROUTES = [
    (b"/openai/v1/chat/completions", AI_BODY), (b"/openai/v1/completions", AI_BODY),
    (b"/openai/v1/responses", AI_BODY), (b"/openai/v1/embeddings", AI_BODY),
    (b"/anthropic/v1/messages", AI_BODY), (b"/anthropic/v1/messages/count_tokens", AI_BODY),
    (b"/gemini/v1beta/models/gemini-2.0-flash:generateContent", GEMINI_BODY),
    (b"/gemini/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEMINI_BODY),
    (b"/gemini/v1beta/models/gemini-2.0-flash:countTokens", GEMINI_BODY),
    (b"/api/v1/generate", AI_BODY),
]

SEGMENT = st.one_of(
    st.sampled_from([b"..", b".", b"%2e%2e", b"%2E%2E", b"..%2F", b"%2F", b"%5C", b"\\", b"%00", b"%zz", b"%",
                     b"%252e%252e", b"%c0%ae%c0%ae", b";", b"..;", b"models", b"files", b"v1", b"v1beta",
                     b"chat", b"completions", b"messages", b"users", b"_mock", b"ai", b"requests", b"1",
                     b"certificates", b"gpt-4o:generateContent", b"%ff", b"\xc3\xa9", b"",
                     # raw bytes that are not UTF-8 (a lone continuation, an overlong "/", a surrogate)
                     b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"%c0%af", b"..%00", b"%2f..%2f"]),
    st.binary(min_size=1, max_size=6).map(lambda raw: urllib.parse.quote_from_bytes(raw).encode()))
PREFIX = st.sampled_from([b"/api/v1/proxy", b"/openai/v1", b"/openai/v1/models", b"/anthropic/v1",
                          b"/gemini/v1beta/models", b"/gemini/v1/models", b"/api/v1/admin/users", b"/api/v1/tokens",
                          b"/api/v1/keys", b"/api/v1/bundles", b"/api/v1/auth", b"", b"/health", b"/api/v1"])
METHOD = st.sampled_from([b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"])
AUTH = st.sampled_from(["none", "client", "admin", "key", "x-api-key", "goog", "proxy", "proxy", "cookie"])
HEADER_VALUE = st.one_of(st.binary(max_size=20).filter(lambda raw: b"\r" not in raw and b"\n" not in raw),
                         st.sampled_from([b"Bearer \xff\xfe", b"Bearer ", b"bearer tg_" + b"A" * 43, b"\x00",
                                          b"Basic YWRtaW4=", b"Bearer " + b"a" * 9000, b"null",
                                          b"tollgate_session=" + b"a" * 64 + b"." + b"b" * 43,
                                          b"a=1; tollgate_session; tollgate_session=\xff"]))
ODD_HEADERS = st.lists(st.tuples(st.sampled_from([b"Authorization", b"X-Access-Token", b"X-Device-ID",
                                                  b"X-Forwarded-For", b"X-Request-Id", b"Idempotency-Key",
                                                  b"Content-Encoding", b"Transfer-Encoding", b"Expect",
                                                  b"X-Api-Key", b"Accept-Encoding", b"Range", b"Cookie",
                                                  b"Origin", b"Referer"]),
                                 HEADER_VALUE), max_size=3)


# -- the tests -----------------------------------------------------------------------------------

@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data())
def test_json_api_endpoints_answer_hostile_bodies_in_shape(live, endpoint, data):
    method, path, names, who = endpoint
    path = path.replace(b"{id}", b"%d" % live.user_id) if data.draw(st.booleans()) else path
    while b"{id}" in path:
        path = path.replace(b"{id}", data.draw(ID), 1)
    body, headers = data.draw(bodies(objects(*names))) if names or method != b"GET" else (b"", [])
    reply = send(live, method, path, live.auth[who] + headers, body)
    assert_answered_well(reply, "api", method)


@FUZZ
@given(route=st.sampled_from(AI_ROUTES), who=st.sampled_from(["key", "x-api-key", "goog", "none", "client"]),
       data=st.data())
def test_ai_routes_answer_hostile_bodies_in_the_providers_shape(live, route, who, data):
    path, shape = route
    body, headers = data.draw(bodies(shape))
    reply = send(live, b"POST", path, live.auth[who] + headers, body)
    assert_answered_well(reply, shape_of(path))


@FUZZ
@given(method=METHOD, prefix=PREFIX, segments=st.lists(SEGMENT, min_size=0, max_size=5),
       query=st.one_of(st.just(b""), st.binary(max_size=12).map(lambda raw: b"?" + urllib.parse.quote_from_bytes(
           raw, safe="=&").encode())), who=AUTH, odd=ODD_HEADERS)
def test_paths_methods_and_headers_are_answered_in_shape(live, method, prefix, segments, query, who, odd):
    path = prefix + b"/" + b"/".join(segments) + query
    auth = live.fresh_proxy_auth() if who == "proxy" else live.auth[who]
    reply = send(live, method, path, auth + odd, b"" if method in (b"GET", b"HEAD") else b"{}")
    assert_answered_well(reply, shape_of(path), method)


@FUZZ
@given(payload=st.binary(max_size=2048), coding=st.sampled_from([b"gzip", b"deflate", b"br", b"identity"]),
       compress=st.booleans(), method=st.sampled_from([b"POST", b"PUT", b"PATCH"]),
       path=st.sampled_from([b"/api/v1/proxy/upload", b"/api/v1/proxy/early/x?y=1", b"/api/v1/proxy/"]))
def test_the_proxy_forwards_encoded_bodies_byte_for_byte(live, payload, coding, compress, method, path):
    if compress and coding == b"gzip":
        payload = gzip.compress(payload)
    elif compress and coding == b"deflate":
        payload = zlib.compress(payload)
    fuzz_id = live.next_id()
    headers = live.fresh_proxy_auth() + [(b"Content-Encoding", coding), (b"X-Fuzz-Id", fuzz_id.encode())]
    reply = send(live, method, path, headers, payload)
    assert_answered_well(reply, "api", method)
    assert reply.status == 200, (reply.status, reply.body[:200])
    received = live.target.received.pop(fuzz_id)
    assert received.body == payload
    assert received.headers.get("Content-Encoding") == coding.decode()




@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_requests_get_a_json_400_that_echoes_nothing(live, raw):
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    assert 400 <= response.status < 500, (response.status, body)
    assert "aiohttp" not in response.headers.get("Server", "")
    assert response.headers.get_content_type() == "application/json", body
    assert set(json.loads(body)["error"]) >= {"code", "message"}
    assert b"\x00" not in body and b"Bad Header" not in body and b"FOO" not in body


def no_line_breaks(raw: bytes) -> bytes:
    return raw.replace(b"\r", b"").replace(b"\n", b"")


@FUZZ
@given(method=st.one_of(METHOD, st.binary(min_size=1, max_size=8).map(no_line_breaks)),
       prefix=PREFIX, target=st.binary(max_size=30).map(no_line_breaks),
       version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/9.9", b"HTTP/1", b"http/1.1",
                                b"HTTP/1.1\x00", b"HTTP/1.1 x", b"HTTPS/1.1"]),
       headers=st.lists(st.tuples(st.one_of(st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding",
                                                             b"Authorization", b"X-Access-Token", b"Expect",
                                                             b"Upgrade", b"Connection"]),
                                            st.binary(max_size=10).map(no_line_breaks)),
                                  st.binary(max_size=24).map(no_line_breaks)), max_size=4))
def test_hostile_request_heads_are_answered_in_shape(live, method, prefix, target, version, headers):
    """Request lines and headers built from any bytes but line breaks, over a raw socket: whatever
    the parser makes of them — refused, routed, or half-understood — the answer is never a 5xx and
    an error comes in the documented shape (the parser's own refusals included)."""
    lines = [method + b" " + prefix + b"/" + target + b" " + version, b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers] + [b"Connection: close"]
    announced_body = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
    answer = b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=2 if announced_body else 30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:  # still waiting for the body it was told of, which never comes
            assert announced_body and not answer, lines
            return
    assert answer, lines
    with socket.socket() as placeholder:  # http.client reads a response from a file-like socket
        response = http.client.HTTPResponse(_Replay(answer, placeholder), method="HEAD" if method == b"HEAD" else "GET")
        response.begin()
        reply = Reply(response.status, response.headers, response.read())
    assert_answered_well(reply, shape_of(prefix + b"/" + target), method)


class _Replay:
    """Bytes already received, offered as the socket http.client reads a response from."""

    def __init__(self, data: bytes, _sock: socket.socket) -> None:
        self.data = data

    def makefile(self, _mode: str):
        import io

        return io.BytesIO(self.data)


def test_the_fuzz_left_no_hold_open_and_the_books_balance(live):
    time.sleep(0.2)
    open_holds = live.run(live.pool.fetchval(
        "SELECT count(*) FROM transfers p WHERE p.phase = 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"))
    assert open_holds == 0
    report = live.run(ledger.reconcile(live.pool))
    assert report.ok, report.text()


def test_the_fuzz_logged_no_traceback_and_no_error(live, noted):
    """Hostile input is the clients' doing: it may cost a warning, never an error or a traceback
    (which would page someone, and fill the log with the attacker's choice of stack)."""
    assert noted.records == []
