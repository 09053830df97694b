"""Proxy sessions: counted in memory, flushed in batches, ended when idle."""

from __future__ import annotations

from gateway.proxy.resources import SESSIONS
from tests.support.accounts import make_token, proxy_headers

ECHO = "/api/v1/proxy/echo/x"
SELECT_SESSIONS = """
SELECT device_id, requests, bytes_in, bytes_out, ip, user_agent, ended_at IS NOT NULL AS ended
FROM proxy_sessions ORDER BY id"""


async def test_requests_are_not_written_one_by_one(gateway, database):
    issued = await make_token(database)
    for _ in range(3):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    assert await database.fetchval("SELECT count(*) FROM proxy_sessions") == 0


async def test_a_flush_writes_one_row_per_token_and_device(gateway, database):
    issued = await make_token(database)
    headers = proxy_headers(issued.token, "laptop", **{"User-Agent": "desk/1.0"})
    for body in (b"12345", b"678"):
        assert (await gateway.post(ECHO, data=body, headers=headers)).status == 200
    assert await gateway.app[SESSIONS].flush() == 1
    rows = await database.fetch(SELECT_SESSIONS)
    assert len(rows) == 1
    row = rows[0]
    assert (row["device_id"], row["requests"], row["bytes_in"]) == ("laptop", 2, 8)
    assert row["bytes_out"] > 0 and row["ip"] == "127.0.0.1" and row["user_agent"] == "desk/1.0"


async def test_flushes_add_up_in_the_open_session(gateway, database):
    issued = await make_token(database)
    for _ in range(2):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
        await gateway.app[SESSIONS].flush()
    assert await database.fetchval("SELECT requests FROM proxy_sessions") == 2


async def test_an_idle_session_is_ended_and_a_new_one_starts(gateway, database, clock):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    recorder = gateway.app[SESSIONS]
    await recorder.flush()
    clock.advance(301)
    assert await recorder.end_idle() == 1
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    await recorder.flush()
    rows = await database.fetch(SELECT_SESSIONS)
    assert [(r["device_id"], r["ended"]) for r in rows] == [("laptop", True), ("phone", False)]


async def test_refused_requests_are_not_counted(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409
    await gateway.app[SESSIONS].flush()
    rows = await database.fetch(SELECT_SESSIONS)
    assert [(r["device_id"], r["requests"]) for r in rows] == [("laptop", 1)]


async def test_a_user_agent_with_invalid_utf8_does_not_poison_the_flush(gateway, database):
    import asyncio

    issued = await make_token(database)
    host, port = gateway.server.host, gateway.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /api/v1/proxy/echo/x HTTP/1.1\r\nHost: x\r\nX-Access-Token: "
                 + issued.token.encode() + b"\r\nX-Device-ID: d1\r\nUser-Agent: bad\xff\xfeua\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    head = await reader.readline()
    writer.close()
    assert b" 200 " in head
    assert await gateway.app[SESSIONS].flush() == 1
    assert (await database.fetchval("SELECT user_agent FROM proxy_sessions")).startswith("bad")
