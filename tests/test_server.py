"""Serving with --workers N: one port shared, dead workers replaced, a master that gives up; a SIGTERM
that drains what is in flight."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import aiohttp
import orjson
import pytest

from devkit.embedded import free_port
from tests.support import ai
from tests.support.accounts import make_token, proxy_headers
from tests.support.processes import TOLLGATE, ai_env, gateway_env, serve, stop, wait_until_up

PROXY_SERIES = re.compile(r'^tollgate_http_requests_total\{[^}]*route="proxy"[^}]*\} (\S+)$', re.M)


async def wait_for_workers(base: str, count: int, seconds: float = 30.0) -> None:
    """Both workers count themselves in once their start-up (pools, Redis) is done."""
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds * 10)):
            async with session.get(base + "/metrics") as response:
                if re.search(rf"^tollgate_workers {count}\.0$", await response.text(), re.M):
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} workers did not come up")


async def test_two_workers_share_one_port_and_report_each_others_requests(servers, database,
                                                                          mock_target):
    issued = await make_token(database)
    limited = await make_token(database, email="premium@example.com", plan="premium")
    port, admin_port = free_port(), free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_PLAN_LIMITS_PER_MIN="free=1000,premium=5,enterprise=0", TOLLGATE_MAIL_SENDER="none",
                      TOLLGATE_ADMIN_LISTEN=f"127.0.0.1:{admin_port}")
    process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base + "/health", process)
        await wait_for_workers(base, 2)
        requests_n = 40
        # A fresh connection per request lets the kernel spread them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(requests_n):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(issued.token)) as response:
                    assert response.status == 200
            statuses = []
            for _ in range(12):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(limited.token)) as response:
                    statuses.append(response.status)
            scrapes = []
            for _ in range(6):
                async with session.get(base + "/metrics") as response:
                    scrapes.append(await response.text())
            # The admin UI on its own listener, shared by the workers like the main port (decision 0027).
            for _ in range(6):
                async with session.get(f"http://127.0.0.1:{admin_port}/admin/login") as response:
                    assert response.status == 200 and 'name="password"' in await response.text()
                async with session.get(base + "/admin/login") as response:
                    assert response.status == 404
        # The premium limit (5/min) holds across both workers: Redis keeps one window.
        assert sorted(statuses) == [200] * 5 + [429] * 7
        for text in scrapes:
            assert sum(float(v) for v in PROXY_SERIES.findall(text)) == requests_n + 12
            assert re.search(r"^tollgate_workers 2\.0$", text, re.M)
    finally:
        await stop(process)


def worker_pids(master_pid: int) -> set[int]:
    """The master's worker processes: its spawned children (the resource tracker is not one)."""
    pids = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                command = cmdline.read()
        except OSError:
            continue  # gone meanwhile
        if parent == master_pid and b"spawn_main" in command:
            pids.add(int(entry))
    return pids


async def eventually(predicate, seconds: float = 30.0) -> bool:
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(servers, database, mock_target, tmp_path):
    issued = await make_token(database)
    port, metrics_port = free_port(), free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_METRICS_PORT=str(metrics_port))
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                       stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base + "/health", process)
        await wait_for_workers(f"http://127.0.0.1:{metrics_port}", 2)
        first = worker_pids(process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        assert await eventually(lambda: len(worker_pids(process.pid) - first) == 1)
        assert victim not in worker_pids(process.pid)
        await wait_for_workers(f"http://127.0.0.1:{metrics_port}", 2)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(20):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(issued.token)) as response:
                    assert response.status == 200
        assert process.returncode is None
    finally:
        await stop(process)
    assert process.returncode == 0
    assert f"worker {victim} exited" in log_path.read_text()


async def test_workers_that_keep_failing_at_start_make_the_master_exit_non_zero(servers, tmp_path):
    env = gateway_env(servers, TOLLGATE_TARGET_URL="http://127.0.0.1:9", TOLLGATE_PORT=str(free_port()),
                      TOLLGATE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
                      TOLLGATE_WORKER_RESTARTS_MAX="2", TOLLGATE_WORKER_RESTART_WINDOW_S="60")
    process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, errors = await asyncio.wait_for(process.communicate(), 90)
    finally:
        await stop(process)
    assert process.returncode == 1
    assert b"giving up" in errors


# -- graceful shutdown: SIGTERM under load --------------------------------------------------------

GRACE_S = 2.5
STREAM = {"model": ai.GPT, "messages": ai.MESSAGES, "max_tokens": 20, "stream": True,
          "stream_options": {"include_usage": True}}


async def stream_call(session, url: str, headers: dict, started: asyncio.Event) -> tuple[bytes, bool]:
    """An OpenAI stream read to its end: (the bytes received, whether it ended cleanly)."""
    received = b""
    try:
        async with session.post(url, json=STREAM, headers=headers) as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += chunk
                started.set()
        return received, True
    except aiohttp.ClientPayloadError:
        return received, False
    finally:
        started.set()


async def proxy_call(session, url: str, headers: dict) -> int:
    async with session.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def test_sigterm_drains_requests_and_streams_settles_the_cut_ones_and_exits_zero(
        servers, gateway_factory, mock_target, database, tmp_path):
    """Two long streams (beyond the grace), three short ones and two slow proxied requests are in
    flight when SIGTERM comes: the listener closes at once, the short ones finish, the long ones are
    cut at the grace and charged for what they delivered, every hold is resolved, every usage row
    and the proxy session's counters are written, and the process exits 0 soon after the grace."""
    stack = await ai.start(gateway_factory, mock_target, database)
    issued = await make_token(database, email="desktop@example.com")
    await stack.control("latency", {"ms": 0, "chunk_ms": 40})
    await stack.control("faults", {"mode": "slow_stream", "count": 2, "delay_ms": 1000, "provider": "openai"})
    port = free_port()
    env = gateway_env(servers, TOLLGATE_PORT=str(port), TOLLGATE_SHUTDOWN_GRACE_S=str(GRACE_S),
                      TOLLGATE_SESSION_FLUSH_INTERVAL_S="3600", TOLLGATE_HOLD_EXPIRY_INTERVAL_S="3600",
                      **ai_env(mock_target))
    process = await serve(env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    chat, key = base + "/openai/v1/chat/completions", {"Authorization": f"Bearer {stack.key}"}
    try:
        await wait_until_up(base + "/health", process)
        async with aiohttp.ClientSession() as session:
            long_started = [asyncio.Event() for _ in range(2)]
            long = [asyncio.create_task(stream_call(session, chat, key, event)) for event in long_started]
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in long_started)), 10)
            short_started = [asyncio.Event() for _ in range(3)]
            short = [asyncio.create_task(stream_call(session, chat, key, event)) for event in short_started]
            slow = [asyncio.create_task(proxy_call(session, base + "/api/v1/proxy/slow?delay_ms=1200",
                                                   proxy_headers(issued.token))) for _ in range(2)]
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in short_started)), 10)
            await asyncio.sleep(0.1)  # the proxied requests are under way too
            signalled_s = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):  # the listener is closed at once
                await proxy_call(session, base + "/health", {})
            short_results = await asyncio.gather(*short)
            assert await asyncio.gather(*slow) == [200, 200]
            long_results = await asyncio.gather(*long)
        assert await asyncio.wait_for(process.wait(), GRACE_S + 10) == 0
        stopped_s = time.monotonic() - signalled_s
    finally:
        await stop(process)
    assert stopped_s < GRACE_S + 2.5
    assert all(whole and received.endswith(b"data: [DONE]\n\n") for received, whole in short_results)
    assert all(not whole and b"[DONE]" not in received for received, whole in long_results)
    assert await stack.open_holds() == 0
    rows = await database.fetch("SELECT outcome, usage_source, charged_micro, hold_transfer_id FROM ai_usage")
    assert sorted(row["outcome"] for row in rows) == ["ok", "ok", "ok", "shutdown", "shutdown"]
    for row in rows:
        held = await database.fetchval("SELECT amount_micro FROM transfers WHERE id = $1", row["hold_transfer_id"])
        assert 0 < row["charged_micro"] <= held
        assert row["usage_source"] == ("upstream" if row["outcome"] == "ok" else "estimated")
    assert await database.fetchval("SELECT sum(requests) FROM proxy_sessions WHERE token_id = $1", issued.id) == 2


async def test_a_served_gateway_answers_what_its_parser_refuses_in_json_with_one_warning_each(
        servers, database, mock_target, tmp_path):
    """`tollgate serve` as deployed (uvloop, the C parser, two workers, the log on stderr): every
    request the parser refuses gets the documented JSON 400 and one short warning line, and the
    log holds no traceback (issue 14: it used to be text/plain and a traceback per request)."""
    from tests.support.malformed import MALFORMED

    port = free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port))
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                       stdout=subprocess.DEVNULL, stderr=log)
    codes = []
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/health", process)
        before = log_path.read_text()
        for raw in MALFORMED:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            codes.append((head.split(b" ", 2)[1], orjson.loads(body)["error"]["code"]))
        await asyncio.sleep(0.5)  # the workers' last lines reach the log
        logged = log_path.read_text()[len(before):]
    finally:
        await stop(process)
    assert codes == [(b"400", "malformed_request")] * len(MALFORMED)
    warnings = [line for line in logged.splitlines() if "malformed request from 127.0.0.1: " in line]
    assert len(warnings) == len(MALFORMED) and "Traceback" not in logged, logged[-3000:]
    assert all(len(line) < 200 for line in warnings)


def test_a_serving_worker_freezes_its_start_up_objects_and_collects_young_ones_less_often():
    import gc

    from gateway.server import GC_THRESHOLD_YOUNG, tune_gc

    threshold = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == (GC_THRESHOLD_YOUNG, *threshold[1:])
    finally:  # this process is the test runner's, not a worker
        gc.unfreeze()
        gc.set_threshold(*threshold)
