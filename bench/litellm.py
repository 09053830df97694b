"""LiteLLM proxy as the peer AI gateway: its own virtualenv under /tmp, a config pointing at the mock.

LiteLLM is installed from PyPI (`pip install 'litellm[proxy]'`) into a virtualenv of its own, never
into the project's .venv: its dependency pins (pydantic, openai, httpx, ...) are not ours. The
virtualenv is kept between runs, so only the first run pays for the install.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import BenchError, Server, get, start

VENV = Path("/tmp/tollgate-bench-litellm-venv")
PACKAGE = "litellm[proxy]"
INSTALL_TIMEOUT_S = 420
# LiteLLM imports a lot at start-up (FastAPI, the provider SDKs, its model cost map).
READY_TIMEOUT_S = 120.0
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True, slots=True)
class Peer:
    server: Server
    url: str
    master_key: str
    version: str


def binary(venv: Path = VENV) -> Path:
    return venv / "bin" / "litellm"


def version(venv: Path = VENV) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "unknown"


def ensure_installed(venv: Path = VENV, *, install: bool = True) -> None:
    """LiteLLM's proxy in `venv`, installed there if missing; BenchError says why it is not there."""
    if binary(venv).exists():
        return
    if not install:
        raise BenchError(f"LiteLLM is not installed in {venv} (run without --no-peer-install to install it)")
    python = shutil.which("python3")
    if python is None:
        raise BenchError("no python3 on PATH to make LiteLLM's virtualenv with")
    print(f"==> installing {PACKAGE} into {venv} (first run only; up to {INSTALL_TIMEOUT_S // 60} min)", flush=True)
    started = time.monotonic()
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PACKAGE], capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"pip install {PACKAGE} did not finish in {INSTALL_TIMEOUT_S} s") from None
    except subprocess.CalledProcessError as error:
        raise BenchError(f"python3 -m venv {venv} failed: {error.stderr!r}") from None
    if done.returncode != 0 or not binary(venv).exists():
        raise BenchError(f"pip install {PACKAGE} failed ({done.returncode}):\n{done.stderr[-LOG_TAIL_CHARS:]}")
    print(f"    installed in {time.monotonic() - started:.0f} s", flush=True)


def render_config(*, openai_base_url: str, upstream_key: str, master_key: str, model: str) -> str:
    """One OpenAI-compatible model served from the mock; no database, no callbacks, no retries."""
    return f"""\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {openai_base_url}
      api_key: {upstream_key}
litellm_settings:
  num_retries: 0
  request_timeout: 30
  set_verbose: false
  telemetry: false
general_settings:
  master_key: {master_key}
"""


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOLLGATE_", "LITELLM_", "OPENAI_", "DATABASE_URL", "VIRTUAL_ENV"))}
    env.update({
        # Its bundled model cost map, not a download at start-up (there is no network here anyway).
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # no .env loading (the production best practice)
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
        "PATH": f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    return env


def start_litellm(directory: Path, *, port: int, openai_base_url: str, upstream_key: str, model: str,
                  workers: int, venv: Path = VENV) -> Peer:
    """Start `litellm --config` on 127.0.0.1:`port` and wait until it answers its liveness probe."""
    master_key = "sk-bench-" + secrets.token_urlsafe(16)
    config = directory / "litellm.yaml"
    config.write_text(render_config(openai_base_url=openai_base_url, upstream_key=upstream_key,
                                    master_key=master_key, model=model))
    argv = [str(binary(venv)), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers)]
    server = start("litellm", argv, directory / "litellm.log", cwd=directory, env=environment())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"litellm exited with {server.process.returncode}:\n{server.log_tail()}")
        if get(url + "/health/liveliness")[0] == 200:
            return Peer(server, url, master_key, version(venv))
        time.sleep(0.5)
    server.stop()
    raise BenchError(f"litellm did not answer 200 at {url}/health/liveliness in {READY_TIMEOUT_S:.0f} s:\n"
                     f"{server.log_tail()}")
