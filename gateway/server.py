"""Serving: one or N worker processes on one port (SO_REUSEPORT), uvloop in each."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile

from gateway.config import Settings

log = logging.getLogger(__name__)


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve_forever(settings: Settings, reuse_port: bool) -> None:
    from aiohttp import web

    from gateway.app import create_app

    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %d serving on http://%s:%d", os.getpid(), settings.host, settings.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _worker(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(process)d %(name)s %(message)s")
    _install_uvloop()
    asyncio.run(_serve_forever(settings, reuse_port=True))


def serve(settings: Settings) -> None:
    """Run `settings.workers` processes on one port; metrics are summed across them."""
    settings.require("database_url", "redis_url", "target_url", "jwt_secret")
    if settings.workers <= 1:
        _worker(settings)
        return
    owned_dir = None
    metrics_dir = settings.metrics_dir
    if not metrics_dir:
        metrics_dir = owned_dir = tempfile.mkdtemp(prefix="tollgate-metrics-")
    else:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir)
    # prometheus_client reads this when first imported, in each worker (spawned, so it re-imports).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(settings,), name=f"tollgate-worker-{i}")
               for i in range(settings.workers)]
    for process in workers:
        process.start()
    stopping = False

    def _stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        for process in workers:
            process.join()
    finally:
        from prometheus_client import multiprocess

        for process in workers:
            multiprocess.mark_process_dead(process.pid)
        if owned_dir:
            shutil.rmtree(owned_dir, ignore_errors=True)
