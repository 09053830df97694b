"""Serving: one or N worker processes on one port (SO_REUSEPORT), uvloop in each, dead workers replaced."""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import signal
import tempfile
import time

from gateway.core import logs
from gateway.core.config import Settings

log = logging.getLogger(__name__)

# A dead worker's replacement waits this long, doubled for each other death within the restart
# window: a worker that dies at start-up (database unreachable, port taken) does not spin.
RESTART_DELAY_FIRST_S = 0.5
RESTART_DELAY_MAX_S = 30.0
# How often the master looks at its workers when none has died (signals wake it sooner).
SUPERVISE_INTERVAL_S = 0.5
# Descriptors a worker needs besides client connections: upstream, Redis and database pools, logs.
DESCRIPTORS_RESERVED = 64
# Allocations (net of frees) between two young-generation collections in a serving worker; Python's
# default is 700, which a few requests' short-lived objects pass (decision 0028).
GC_THRESHOLD_YOUNG = 10_000


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def start_metrics_site(runner, settings: Settings, reuse_port: bool = False) -> None:
    """The operators' listener for /metrics and /ready, when one is configured."""
    from aiohttp import web

    if settings.metrics_port:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port, reuse_port=reuse_port).start()


async def start_admin_site(runner, settings: Settings, reuse_port: bool = False) -> None:
    """The admin UI's own listener (decision 0027): another origin than the proxied target's pages."""
    from aiohttp import web

    from gateway.core.admin_origin import OFF, AdminOrigin, parse_listen

    admin = AdminOrigin.from_settings(settings)
    if admin.port:
        host, port = parse_listen(settings.admin_listen)
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        log.info("admin UI on %s/admin/ (listening on %s)", admin.origin, settings.admin_listen)
    elif admin.on_main_origin:
        log.warning("admin UI on the main origin (TOLLGATE_ADMIN_ON_MAIN_ORIGIN=true), the origin of the proxied "
                    "target's pages: a script there runs beside it; prefer TOLLGATE_ADMIN_LISTEN")
    else:
        log.warning("%s", OFF)


async def start_sites(runner, settings: Settings, reuse_port: bool) -> None:
    from aiohttp import web

    await web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port, backlog=1024).start()
    await start_metrics_site(runner, settings, reuse_port)
    await start_admin_site(runner, settings, reuse_port)


async def _serve_forever(settings: Settings, reuse_port: bool) -> None:
    from gateway.app import create_app
    from gateway.core.connections import GatewayRunner

    runner = GatewayRunner(create_app(settings), handle_signals=False)
    await runner.setup()
    await start_sites(runner, settings, reuse_port)
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %d serving on http://%s:%d", os.getpid(), settings.host, settings.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def tune_gc() -> None:
    """After start-up: what was built by then (modules, app, tables, pools) moves to the permanent
    generation, so no collection walks it again, and young collections run less often. Reference
    cycles are still collected; only how often and over which objects changes (decision 0028)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_YOUNG, *gc.get_threshold()[1:])


def raise_file_limit(settings: Settings) -> None:
    """Let the connection caps, not the descriptor limit, decide when a connection is refused.

    Out of descriptors, a worker resets every new connection, and it cannot reach its own
    database either (attack 2026-12-01, M7).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = (settings.connections_max + settings.upstream_connections_max + settings.redis_connections_max
              + settings.database_pool_max + DESCRIPTORS_RESERVED)
    ceiling = hard if hard != resource.RLIM_INFINITY else needed
    wanted = min(needed, ceiling) if settings.connections_max else ceiling
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if settings.connections_max and needed > ceiling:
        log.warning("the descriptor limit (%d) is below TOLLGATE_CONNECTIONS_MAX plus the pools (%d): "
                    "lower the cap or raise the limit", ceiling, needed)


def _worker(settings: Settings) -> None:
    logs.configure(settings)
    raise_file_limit(settings)
    _install_uvloop()
    asyncio.run(_serve_forever(settings, reuse_port=True))


def _exit_description(exitcode: int) -> str:
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"status {exitcode}"


class Workers:
    """The master's worker processes: started, watched, replaced after a delay, stopped.

    A worker that dies is replaced (a SIGKILLed worker used to halve capacity silently, and the
    master exited 0 once the last one had gone: attack 2026-12-01, M9). More than
    worker_restarts_max deaths within worker_restart_window_s mean replacing them does not help.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[int, multiprocessing.process.BaseProcess] = {}  # slot -> process
        self.due_s: dict[int, float] = {}  # slot -> when its replacement starts (monotonic)
        self.deaths_s: collections.deque[float] = collections.deque()  # within the window
        self.stopping = False

    def start(self, slot: int) -> None:
        process = self.context.Process(target=_worker, args=(self.settings,), name=f"tollgate-worker-{slot}")
        process.start()
        self.running[slot] = process
        log.info("worker %d started", process.pid)

    def wait(self) -> None:
        multiprocessing.connection.wait([p.sentinel for p in self.running.values()], SUPERVISE_INTERVAL_S)

    def reap(self) -> None:
        """Count dead workers out of the metrics and, unless stopping, schedule their replacements."""
        from prometheus_client import multiprocess

        now_s = time.monotonic()
        for slot, process in list(self.running.items()):
            if process.exitcode is None:
                continue
            del self.running[slot]
            multiprocess.mark_process_dead(process.pid)  # its livesum gauges (tollgate_workers) go
            if self.stopping:
                continue
            self.deaths_s.append(now_s)
            while now_s - self.deaths_s[0] > self.settings.worker_restart_window_s:
                self.deaths_s.popleft()
            delay_s = min(RESTART_DELAY_FIRST_S * 2 ** (len(self.deaths_s) - 1), RESTART_DELAY_MAX_S)
            log.warning("worker %d exited with %s; a new one starts in %.1f s", process.pid,
                        _exit_description(process.exitcode), delay_s)
            self.due_s[slot] = now_s + delay_s

    def keep_failing(self) -> bool:
        return len(self.deaths_s) > self.settings.worker_restarts_max

    def replace_due(self) -> None:
        now_s = time.monotonic()
        for slot, due_s in list(self.due_s.items()):
            if due_s <= now_s:
                del self.due_s[slot]
                self.start(slot)

    def stop(self) -> None:
        self.stopping = True
        self.due_s.clear()
        for process in self.running.values():
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)


def _supervise(workers: Workers) -> bool:
    """Run until stopped by a signal (True) or until workers keep dying (False)."""
    gave_up = False
    while workers.running or workers.due_s:
        workers.wait()
        workers.reap()
        if workers.keep_failing() and not gave_up:
            log.error("giving up: %d worker deaths within %.0f s", len(workers.deaths_s),
                      workers.settings.worker_restart_window_s)
            gave_up = True
            workers.stop()
        workers.replace_due()
    return not gave_up


def serve(settings: Settings) -> None:
    """Run `settings.workers` processes on one port; metrics are summed across them.

    Exits with status 1 when workers keep dying; a SIGTERM or SIGINT stops it with status 0.
    """
    settings.require("database_url", "redis_url", "target_url", "jwt_secret")
    if settings.workers <= 1:
        _worker(settings)
        return
    logs.configure(settings)
    owned_dir = None
    metrics_dir = settings.metrics_dir
    if not metrics_dir:
        metrics_dir = owned_dir = tempfile.mkdtemp(prefix="tollgate-metrics-")
    else:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir)
    # prometheus_client reads this when first imported, in each worker (spawned, so it re-imports).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    workers = Workers(settings)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: workers.stop())
    signal.signal(signal.SIGINT, lambda _signum, _frame: workers.stop())
    try:
        for slot in range(settings.workers):
            if not workers.stopping:  # a signal during start-up stops the rest from starting
                workers.start(slot)
        stopped_cleanly = _supervise(workers)
    finally:
        workers.stop()
        for process in workers.running.values():
            process.join()
        if owned_dir:
            shutil.rmtree(owned_dir, ignore_errors=True)
    if not stopped_cleanly:
        raise SystemExit(1)
