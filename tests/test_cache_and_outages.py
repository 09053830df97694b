"""The auth cache: zero PostgreSQL queries on a warm hit, and what happens when Redis or PostgreSQL is down."""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway.core import metrics
from devkit.embedded import free_port
from gateway.core.app_keys import DATABASE
from tests.conftest import make_token, proxy_headers

ECHO = "/api/v1/proxy/echo/x"


def database_queries() -> float:
    return metrics.DATABASE_QUERIES._value.get()


async def settle() -> None:
    # asyncpg reports queries to its loggers via call_soon; let those callbacks run.
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_warm_cache_makes_zero_postgres_queries(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    before = database_queries()
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    assert database_queries() == before


async def test_the_query_counter_sees_a_cold_lookup(gateway, database):
    issued = await make_token(database)
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    # The lookup itself, plus the pool's reset statement when the connection is released.
    assert database_queries() > before


async def test_a_cold_then_warm_lookup_is_counted_as_fallback_then_hit(gateway, database):
    issued = await make_token(database)
    fallback = metrics.AUTH_CACHE.labels("postgres_fallback")._value.get()
    hits = metrics.AUTH_CACHE.labels("redis_hit")._value.get()
    for _ in range(2):
        await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert metrics.AUTH_CACHE.labels("postgres_fallback")._value.get() == fallback + 1
    assert metrics.AUTH_CACHE.labels("redis_hit")._value.get() == hits + 1


async def test_unknown_tokens_are_remembered_briefly(gateway, database):
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers("C" * 64))).status == 401
    await settle()
    first_lookup = database_queries() - before
    assert first_lookup > 0
    assert (await gateway.get(ECHO, headers=proxy_headers("C" * 64))).status == 401
    await settle()
    assert database_queries() - before == first_lookup


async def test_redis_down_falls_back_to_postgres(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 200


async def test_redis_down_never_fails_open(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get(ECHO, headers=proxy_headers("D" * 64))
    assert response.status == 401


async def test_redis_down_still_binds_devices_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "b"))).status == 409


async def test_redis_down_limits_rates_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                    plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_redis_down_makes_ready_degraded(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get("/ready")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "degraded" and body["checks"]["redis"].startswith("down")


async def test_postgres_down_keeps_cached_tokens_working(gateway, database, servers):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await gateway.app[DATABASE].close()  # the gateway can no longer reach PostgreSQL
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    response = await gateway.get(ECHO, headers=proxy_headers("E" * 64))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"


class RestartingPostgres:
    """A TCP relay in front of the test PostgreSQL that can play a server restart.

    Relaying, it passes bytes both ways. `refuse()` cuts every relayed connection, as a restart
    does, and answers each new one with one PostgreSQL error, as the server does while it starts
    up or recovers (57P03), when it is full (53300) or while it shuts down (57P01). The attack of
    2026-12-01 (L5) saw 500s there.
    """

    def __init__(self, upstream_url: str) -> None:
        address = upstream_url.split("@", 1)[1].split("/", 1)[0]
        self.upstream_host, port = address.rsplit(":", 1)
        self.upstream_port = int(port)
        self.error = b""
        self.refused = 0
        self.relayed: list[asyncio.StreamWriter] = []

    async def start(self, database_url: str) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return database_url.replace(f"{self.upstream_host}:{self.upstream_port}", f"127.0.0.1:{port}")

    def refuse(self, sqlstate: str, message: str) -> None:
        fields = [b"SFATAL", b"VFATAL", b"C" + sqlstate.encode(), b"M" + message.encode()]
        payload = b"".join(field + b"\0" for field in fields) + b"\0"
        self.error = b"E" + struct.pack("!i", len(payload) + 4) + payload
        for writer in self.relayed:
            writer.transport.abort()

    async def close(self) -> None:
        self.refuse("57P01", "shutting down")
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.error:
            await self._answer_with_error(reader, writer)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self.relayed += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _answer_with_error(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!i", await reader.readexactly(4))[0]
                packet = await reader.readexactly(length - 4)
                if packet[:4] in (SSL_REQUEST, GSS_REQUEST):
                    writer.write(b"N")  # no encryption; the client goes on with its startup message
                    continue
                writer.write(self.error)
                self.refused += 1
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()


SSL_REQUEST = struct.pack("!i", 80877103)
GSS_REQUEST = struct.pack("!i", 80877104)
REFUSALS = {"starting up": ("57P03", "the database system is starting up"),
            "too many connections": ("53300", "sorry, too many clients already"),
            "shutting down": ("57P01", "terminating connection due to administrator command")}


@pytest.mark.parametrize("sqlstate, message", REFUSALS.values(), ids=REFUSALS.keys())
@pytest.mark.parametrize("method, path", [("GET", "/api/v1/bundles"), ("POST", "/api/v1/auth/login")])
async def test_a_database_that_refuses_connections_is_a_503(gateway_factory, database, servers, sqlstate,
                                                             message, method, path):
    postgres = RestartingPostgres(servers.database_url)
    gateway = await gateway_factory(database_url=await postgres.start(servers.database_url))
    postgres.refuse(sqlstate, message)
    try:
        response = await gateway.request(method, path, json={"email": "a@example.com", "password": "long enough"})
        assert (response.status, (await response.json())["error"]["code"]) == (503, "service_unavailable")
        assert postgres.refused > 0
    finally:
        await postgres.close()
