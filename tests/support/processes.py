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


def ai_env(mock_target: str) -> dict[str, str]:
    """Settings of a served gateway in front of the mock target and its AI mocks (as tests/support/ai.py
    sets them for an in-process one)."""
    return {"TOLLGATE_TARGET_URL": mock_target, "TOLLGATE_OPENAI_BASE_URL": f"{mock_target}/openai/v1",
            "TOLLGATE_OPENAI_API_KEYS": "sk-mock-a", "TOLLGATE_ANTHROPIC_BASE_URL": f"{mock_target}/anthropic",
            "TOLLGATE_ANTHROPIC_API_KEYS": "sk-mock-claude", "TOLLGATE_GEMINI_BASE_URL": f"{mock_target}/gemini",
            "TOLLGATE_GEMINI_API_KEYS": "mock-gemini"}


async def serve(env: dict[str, str], log_path: Path, *args: str):
    """`tollgate serve` with its stderr in a file (a pipe nobody reads would stall it once full)."""
    with open(log_path, "wb") as log:
        return await asyncio.create_subprocess_exec(*TOLLGATE, "serve", *args, env=env,
                                                    stdout=subprocess.DEVNULL, stderr=log)
