"""The `tollgate` command as a user runs it: its environment, a run, waiting for it and stopping it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.gateways import JWT_SECRET

# The console script exactly as the README's commands run it (not `python -m`, which would hide
# a broken install by importing from the working directory).
TOLLGATE = [str(Path(sys.executable).parent / "tollgate")]


def gateway_env(servers, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    # `serve` refuses the default log mail sender (decision 0014); tests/test_cli.py covers that.
    env.update({"TOLLGATE_DATABASE_URL": servers.database_url, "TOLLGATE_REDIS_URL": servers.redis_url,
                "TOLLGATE_JWT_SECRET": JWT_SECRET, "TOLLGATE_MAIL_SENDER": "none", **extra})
    return env


def run_cli(servers, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TOLLGATE, *args], env=gateway_env(servers), capture_output=True,
                          text=True, timeout=60)


async def wait_until_up(url: str, process, seconds: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds * 10)):
            assert process.returncode is None, "gateway exited early"
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


async def stop(process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
