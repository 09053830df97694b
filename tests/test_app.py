"""The aiohttp application's wiring: request bodies reach handlers as sent (H1), every PostgreSQL query counted,
the reports' reads on a read replica when there is one."""

from __future__ import annotations

import asyncio
import gzip

import asyncpg
import pytest

from gateway.app import REPORTS_APPLICATION_NAME
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from devkit.embedded import free_port
from tests.support.accounts import make_token, proxy_headers, register
from tests.support.bodies import deflate
from tests.support.metrics import database_queries, settle
from tests.support.admin_ui import logged_in, person
from tests.support.ai import GPT, MESSAGES, start
from tests.support.raw_targets import EarlyTarget
from tests.support.replica import caught_up, start_replica

ECHO = "/api/v1/proxy/echo/x"


async def test_the_query_counter_sees_a_cold_lookup(gateway, database):
    issued = await make_token(database)
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    # The lookup itself, plus the pool's reset statement when the connection is released.
    assert database_queries() > before


async def test_the_gateways_pools_let_the_ledgers_batches_skip_the_reset(gateway, database):
    """Both pools are gateway.core.database_pool's (decision 0031): a connection that can be told its
    session was left untouched, and a reset that then skips its query."""
    for key in (DATABASE, REPORTS_DATABASE):
        async with gateway.server.app[key].acquire() as connection:
            assert callable(connection.session_untouched)
            assert await connection.fetchval("SELECT 1") == 1


# Request bodies with a Content-Encoding are forwarded byte for byte on the proxy. The attack of
# 2026-12-01 (H1) showed the server inflating bodies while the proxy forwarded the client's
# Content-Encoding and compressed Content-Length: truncated uploads, a desynchronised upstream
# connection, and requests smuggled past the certificates_only scope.


PROXY = "/api/v1/proxy"
SMUGGLED = b"GET /admin/delete-everything HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
# Not a real brotli stream: the proxy must not care what the bytes are, only pass them on.
BROTLI_LOOKALIKE = bytes.fromhex("1b0d00f8a5404c6a2d6e4c2b01")


@pytest.fixture
async def early_target():
    targets: list[EarlyTarget] = []

    async def start_target(drain: bool) -> EarlyTarget:
        target = await EarlyTarget(drain=drain).start()
        targets.append(target)
        return target

    yield start_target
    for target in targets:
        await target.close()


async def send_raw(port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One request on a fresh connection, exactly these bytes; returns the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n{head}"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


# The proxy: the client's bytes go on unchanged


@pytest.mark.parametrize("coding, body", [
    ("gzip", gzip.compress(b"hello world " * 100)),
    ("deflate", deflate(b"hello world " * 100)),
    ("br", BROTLI_LOOKALIKE),
], ids=["gzip", "deflate", "br"])
async def test_an_encoded_body_reaches_the_target_byte_for_byte(gateway_factory, database, early_target,
                                                                coding, body):
    target = await early_target(drain=True)
    gateway = await gateway_factory(target_url=target.url)
    issued = await make_token(database)
    answer = await send_raw(gateway.port, PROXY + "/upload", {
        **proxy_headers(issued.token), "Content-Encoding": coding}, body)
    assert answer.startswith(b"HTTP/1.1 200")
    [received] = target.requests
    assert (received.header(b"content-encoding"), received.header(b"content-length"), received.body) == (
        coding.encode(), str(len(body)).encode(), body)


async def test_a_compressed_body_cannot_eat_the_next_users_request(gateway_factory, database, early_target):
    """Stored gzip is longer than its text: an inflating proxy sent fewer bytes than it declared."""
    target = await early_target(drain=True)
    gateway = await gateway_factory(target_url=target.url)
    attacker = await make_token(database, email="attacker@example.com")
    victim = await make_token(database, email="victim@example.com")
    body = gzip.compress(b"x" * 40, compresslevel=0)
    await send_raw(gateway.port, PROXY + "/x/early", {**proxy_headers(attacker.token),
                                                      "Content-Encoding": "gzip"}, body)
    response = await gateway.get(PROXY + "/victim/private?x=1", headers=proxy_headers(victim.token, "victim"))
    assert response.status == 200
    assert target.request_lines == [b"POST /x/early HTTP/1.1", b"GET /victim/private?x=1 HTTP/1.1"]


async def test_a_compressed_body_cannot_smuggle_a_request_past_the_scope(gateway_factory, database,
                                                                         early_target):
    target = await early_target(drain=False)
    gateway = await gateway_factory(target_url=target.url)
    issued = await make_token(database, scope="certificates_only")
    body = gzip.compress(SMUGGLED, compresslevel=0)
    answer = await send_raw(gateway.port, PROXY + "/certificates/early", {
        **proxy_headers(issued.token), "Content-Encoding": "gzip"}, body)
    assert answer.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.2)  # anything smuggled would be parsed by now
    assert not [line for line in target.request_lines if line.startswith(b"GET /admin")]


# -- A read replica for the reports (TOLLGATE_DATABASE_REPLICA_URL, decision 0024) -------------------


@pytest.fixture(scope="module")
def replica(servers):
    """A real streaming replica of the test server for this module's tests."""
    made = start_replica(servers.admin_database_url)
    yield made
    made.stop()


async def _calls_reported(stack, export: bool = False) -> int:
    path = "/api/v1/usage/calls" + ("?format=csv" if export else "")
    response = await stack.gateway.get(path, headers=stack.user["headers"])
    assert response.status == 200, await response.text()
    if export:
        return len((await response.text()).splitlines()) - 1  # without the header line
    return len((await response.json())["items"])


async def _chat(stack) -> None:
    answer = await stack.openai().chat.completions.create(model=GPT, max_tokens=5, messages=MESSAGES)
    assert answer.usage.total_tokens > 0


async def test_the_usage_reports_are_read_from_the_replica_and_every_write_goes_to_the_primary(
        gateway_factory, mock_target, database, replica):
    replica_url = replica.url("tollgate_test")
    stack = await start(gateway_factory, mock_target, database, database_replica_url=replica_url)
    await _chat(stack)
    await caught_up(database, replica_url)
    assert await _calls_reported(stack) == 1
    standby = await asyncpg.connect(replica_url)
    try:
        # The reports' pool is the standby's, and it is the one that answered.
        reports = stack.gateway.server.app[REPORTS_DATABASE]
        assert await reports.fetchval("SELECT pg_is_in_recovery()") is True
        assert await standby.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                      REPORTS_APPLICATION_NAME) >= 1
        assert await database.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                       REPORTS_APPLICATION_NAME) == 0
        # With replay paused the replica stands still: the call is written to the primary, and the
        # report (JSON and export alike) still shows what the replica holds.
        await standby.execute("SELECT pg_wal_replay_pause()")
        await _chat(stack)
        assert await database.fetchval("SELECT count(*) FROM ai_usage") == 2
        assert await _calls_reported(stack) == 1 and await _calls_reported(stack, export=True) == 1
        await standby.execute("SELECT pg_wal_replay_resume()")
        await caught_up(database, replica_url)
        assert await _calls_reported(stack) == 2 and await _calls_reported(stack, export=True) == 2
    finally:
        await standby.close()


async def test_the_admin_pages_on_a_replica_roll_up_closed_days_on_the_primary(gateway_factory, database, replica):
    gateway = await gateway_factory(database_replica_url=replica.url("tollgate_test"))
    await person(database, "root@example.com", role="admin")
    await logged_in(gateway, "root@example.com")  # opens the dashboard: the ledger's 30 days
    response = await gateway.get("/admin/ai-usage")  # the AI usage's last 7 days
    assert response.status == 200, await response.text()
    # A standby refuses every write: the missing days were rolled up on the primary.
    assert await database.fetchval("SELECT count(*) FROM ledger_days_rolled") == 28
    assert await database.fetchval("SELECT count(*) FROM ai_usage_days_rolled") == 5


async def test_a_gateway_whose_replica_is_down_starts_and_serves_all_but_the_reports(gateway_factory, database):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/tollgate_test"
    gateway = await gateway_factory(database_replica_url=dead)
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    user = await register(gateway, "reader@example.com")
    response = await gateway.get("/api/v1/usage", headers=user["headers"])
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"
