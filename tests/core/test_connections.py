"""Client connections over raw sockets: head and idle timeouts, connection caps, malformed requests.

The attack of 2026-12-01 held 20,000 half-sent requests open from one host until the worker ran
out of descriptors (M7), and found parser-level 400s in text/plain that echoed the offending bytes,
named the aiohttp version and logged a traceback each (L3).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.support.accounts import make_token, proxy_headers

HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
# A marker in every malformed request: it must not come back in the answer or go to the log.
MARKER = "tg_markerdonotecho"


async def connect(port: int, source: str = "127.0.0.1"):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it was still open after `seconds`."""
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except asyncio.TimeoutError:
        return None


async def health_from(port: int, source: str) -> bytes:
    """GET /health on a fresh connection from `source`; b"" when the gateway closes it unanswered."""
    reader, writer = await connect(port, source)
    writer.write(HEALTH_REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


# Timeouts


async def test_a_half_sent_request_is_closed_after_the_head_timeout(gateway_factory):
    gateway = await gateway_factory(request_head_timeout_s=0.5)
    reader, writer = await connect(gateway.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
    started = time.monotonic()
    assert await closed_within(reader, 5) == b""
    assert time.monotonic() - started < 2
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(gateway_factory):
    gateway = await gateway_factory(request_head_timeout_s=0.5)
    reader, writer = await connect(gateway.port)
    assert await closed_within(reader, 5) == b""
    writer.close()


async def test_a_head_sent_a_line_at_a_time_is_closed_after_the_head_timeout(gateway_factory):
    gateway = await gateway_factory(request_head_timeout_s=0.5)
    reader, writer = await connect(gateway.port)
    writer.write(b"GET /health HTTP/1.1\r\n")
    started = time.monotonic()
    closed = None
    for number in range(40):  # a header every 0.1 s: the clock does not restart with each byte
        writer.write(f"X-Drip-{number}: x\r\n".encode())
        closed = await closed_within(reader, 0.1)
        if closed is not None:
            break
    assert closed == b"" and time.monotonic() - started < 2
    writer.close()


async def test_a_slow_answer_is_not_cut_by_the_head_timeout(gateway_factory, database):
    gateway = await gateway_factory(request_head_timeout_s=0.3)
    issued = await make_token(database)
    response = await gateway.get("/api/v1/proxy/slow?delay_ms=1000", headers=proxy_headers(issued.token))
    assert (response.status, await response.text()) == (200, "slow")


async def test_a_slow_upload_is_not_cut_by_the_head_timeout(gateway_factory, database):
    gateway = await gateway_factory(request_head_timeout_s=0.3)
    issued = await make_token(database)

    async def slowly():
        for _ in range(5):
            await asyncio.sleep(0.2)
            yield b"x" * 100

    response = await gateway.post("/api/v1/proxy/echo/x", data=slowly(), headers=proxy_headers(issued.token))
    assert response.status == 200 and (await response.json())["body_bytes"] == 500


async def test_a_kept_alive_connection_serves_the_next_request_then_closes_when_idle(gateway_factory):
    gateway = await gateway_factory(request_head_timeout_s=0.3, idle_timeout_s=1.0)
    reader, writer = await connect(gateway.port)
    for _ in range(2):
        writer.write(HEALTH_REQUEST)
        assert (await reader.readuntil(b'{"status":"ok"}')).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.5)  # idle: longer than the head timeout, shorter than the idle timeout
    started = time.monotonic()
    assert await closed_within(reader, 3) == b""
    assert time.monotonic() - started < 1.5
    writer.close()


# Connection caps


async def test_beyond_the_per_ip_cap_new_connections_are_closed_until_the_holder_lets_go(gateway_factory):
    gateway = await gateway_factory(connections_per_ip_max=3, connections_max=0, request_head_timeout_s=30)
    held = [await connect(gateway.port) for _ in range(3)]
    for _, writer in held:
        writer.write(b"GET /health HTTP/1.1\r\n")  # half-sent, as in the attack
    assert await health_from(gateway.port, "127.0.0.1") == b""
    assert (await health_from(gateway.port, "127.0.0.2")).startswith(b"HTTP/1.1 200")
    for _, writer in held:
        writer.close()

    async def served_again() -> bool:
        return (await health_from(gateway.port, "127.0.0.1")).startswith(b"HTTP/1.1 200")

    assert await wait_until(served_again)


async def test_beyond_the_total_cap_new_connections_are_closed_until_one_ends(gateway_factory):
    gateway = await gateway_factory(connections_max=2, connections_per_ip_max=0, request_head_timeout_s=30)
    held = [await connect(gateway.port, "127.0.0.1"), await connect(gateway.port, "127.0.0.2")]
    assert await health_from(gateway.port, "127.0.0.3") == b""
    held[0][1].close()

    async def served_again() -> bool:
        return (await health_from(gateway.port, "127.0.0.3")).startswith(b"HTTP/1.1 200")

    assert await wait_until(served_again)
    held[1][1].close()


def closed_count(reason: str) -> float:
    return REGISTRY.get_sample_value("tollgate_connections_closed_total", {"reason": reason}) or 0.0


async def test_refused_and_timed_out_connections_are_counted(gateway_factory):
    gateway = await gateway_factory(connections_per_ip_max=1, connections_max=0, request_head_timeout_s=0.3)
    before = closed_count("ip_limit"), closed_count("head_timeout")
    reader, writer = await connect(gateway.port)
    assert await health_from(gateway.port, "127.0.0.1") == b""
    assert await closed_within(reader, 3) == b""
    writer.close()
    assert (closed_count("ip_limit"), closed_count("head_timeout")) == (before[0] + 1, before[1] + 1)


# Malformed requests


async def raw_answer(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await connect(port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


MALFORMED = {
    "unknown method": f"FOO /{MARKER} HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in a header": f"GET /health HTTP/1.1\r\nHost: x\r\nX-Token: {MARKER}\x00\r\n\r\n",
    "bare LF": f"GET /health HTTP/1.1\r\nHost: x\nX-Token: {MARKER}\r\n\r\n",
    "CL and TE": f"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                 f"X-Token: {MARKER}\r\n\r\n0\r\n\r\n",
    "space in a header name": f"GET /health HTTP/1.1\r\nHost: x\r\nX Token: {MARKER}\r\n\r\n",
}


@pytest.mark.parametrize("request_text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_gets_the_documented_json_error(gateway, request_text):
    status, headers, body = await raw_answer(gateway.port, request_text.encode("latin-1"))
    error = orjson.loads(body)["error"]
    assert (status, headers["content-type"].split(";")[0], set(error)) == (
        400, "application/json", {"code", "message", "request_id"})
    assert error["request_id"] == headers["x-request-id"]


@pytest.mark.parametrize("request_text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_is_not_echoed_and_logs_no_traceback(gateway, request_text, caplog):
    caplog.set_level(logging.DEBUG)
    _, headers, body = await raw_answer(gateway.port, request_text.encode("latin-1"))
    assert MARKER.encode() not in body and "aiohttp" not in headers.get("server", "")
    noted = [record for record in caplog.records if MARKER in record.getMessage() or record.exc_info
             or record.levelno >= logging.INFO and record.name.startswith("aiohttp")]
    assert noted == []


@pytest.mark.parametrize("request_text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_costs_one_short_warning(gateway, request_text, caplog):
    """An operator sees hostile or broken clients at the default log level (decision 0026), one
    line each, naming the peer and the parser's complaint, never the bytes or a traceback."""
    caplog.set_level(logging.DEBUG)
    await raw_answer(gateway.port, request_text.encode("latin-1"))
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith("malformed request from 127.0.0.1: ") and len(message) < 160, message
    assert "\n" not in message and MARKER not in message


async def test_no_response_names_the_server_software(gateway, database):
    issued = await make_token(database)
    answers = [await gateway.get("/health"), await gateway.get("/nope"),
               await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token)),
               await gateway.get("/api/v1/bundles")]
    assert [answer.headers.get("Server") for answer in answers] == ["tollgate"] * 4


async def test_a_malformed_request_leaves_the_gateway_serving(gateway):
    await raw_answer(gateway.port, MALFORMED["unknown method"].encode())
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{gateway.port}/health") as response:
            assert response.status == 200


@pytest.mark.parametrize("expect", [b"!", b"\x80", b"", b"200-ok"])
async def test_an_unknown_expect_is_a_json_417_that_echoes_nothing(gateway, expect):
    """Found by the fuzz (tests/test_fuzz.py): aiohttp answered 'Unknown Expect: <value>' as text, and
    a 500 when the value was not UTF-8, before the middleware could render it."""
    status, headers, body = await raw_answer(
        gateway.server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: " + expect + b"\r\nConnection: close\r\n\r\n")
    assert status == 417 and headers["server"] == "tollgate"
    assert orjson.loads(body)["error"]["code"] == "expectation_failed"
    assert b"Unknown" not in body and (not expect or expect not in body)


async def test_expect_100_continue_still_gets_its_interim_answer(gateway, database):
    response = await gateway.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x"},
                                  expect100=True)
    assert response.status == 401
