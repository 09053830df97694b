"""Many gateways in tests: N `tollgate serve` processes on their own ports, sharing one Redis and
PostgreSQL, behind the test's round-robin load balancer (tests/support/load_balancer.py)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass, field

import aiohttp

from devkit.embedded import free_port
from tests.support.load_balancer import RoundRobin
from tests.support.processes import TOLLGATE, gateway_env, stop, wait_until_up

# What every instance of the fleet runs with: the mock upstream for the desktop path and the AI
# providers, flushes often enough for a test to read them.
AI_ENV = ("OPENAI_BASE_URL", "/openai/v1"), ("ANTHROPIC_BASE_URL", "/anthropic"), ("GEMINI_BASE_URL", "/gemini")


@dataclass
class Instance:
    port: int
    process: asyncio.subprocess.Process

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    instances: list[Instance]
    balancer: RoundRobin
    url: str  # the load balancer's base URL: what clients use
    logs: list[bytes] = field(default_factory=list)


def fleet_env(servers, mock_target: str, port: int, public_url: str, **extra: str) -> dict[str, str]:
    env = {"TOLLGATE_TARGET_URL": mock_target, "TOLLGATE_PORT": str(port), "TOLLGATE_PUBLIC_URL": public_url,
           "TOLLGATE_SESSION_FLUSH_INTERVAL_S": "0.2", "TOLLGATE_USAGE_FLUSH_INTERVAL_S": "0.05",
           "TOLLGATE_AI_READ_TIMEOUT_S": "5", "TOLLGATE_OPENAI_API_KEYS": "sk-mock-a",
           "TOLLGATE_ANTHROPIC_API_KEYS": "sk-mock-claude", "TOLLGATE_GEMINI_API_KEYS": "mock-gemini"}
    env.update({f"TOLLGATE_{name}": mock_target + path for name, path in AI_ENV})
    env.update(extra)
    return gateway_env(servers, **env)


async def start_instances(servers, mock_target: str, public_url: str, count: int, **extra: str) -> list[Instance]:
    """Start `count` gateways at once and wait until each has set up its pools (/ready)."""
    instances = []
    for _ in range(count):
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            *TOLLGATE, "serve", env=fleet_env(servers, mock_target, port, public_url, **extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        instances.append(Instance(port, process))
    try:
        await asyncio.gather(*(wait_until_up(instance.base + "/ready", instance.process) for instance in instances))
    except BaseException:
        await stop_instances(instances)
        raise
    return instances


async def stop_instances(instances: list[Instance]) -> list[bytes]:
    """SIGTERM each (each flushes what it holds), and their standard error."""
    await asyncio.gather(*(stop(instance.process) for instance in instances))
    return [await instance.process.stderr.read() if instance.process.stderr else b"" for instance in instances]


PROXY_SERIES = re.compile(r'^tollgate_http_requests_total\{[^}]*route="proxy"[^}]*\} (\S+)$', re.M)


async def proxy_requests_counted(instance: Instance) -> float:
    """What this instance's own /metrics counts of proxied requests."""
    async with aiohttp.ClientSession() as session:
        async with session.get(instance.base + "/metrics") as response:
            return sum(float(value) for value in PROXY_SERIES.findall(await response.text()))
