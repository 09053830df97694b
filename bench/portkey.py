"""Portkey's AI gateway (Node, meters nothing) as the second AI peer: installed with npm in a folder of
its own (bench/portkey/, not committed), started on loopback, routed to the mock by headers."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import BenchError, Server, find_binary, get, start

VERSION = "1.15.2"
PACKAGE = f"@portkey-ai/gateway@{VERSION}"
FOLDER = Path(__file__).resolve().parent / "portkey"
START_SCRIPT = Path("node_modules/@portkey-ai/gateway/build/start-server.js")
INSTALL_TIMEOUT_S = 420
READY_TIMEOUT_S = 60.0
# The gateway listens on every interface (@hono/node-server's serve() passes no host); this preload
# gives Node's listen() the loopback address when it was given none, so nothing is exposed.
LOOPBACK_PRELOAD = """\
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && typeof args[1] !== "string") args[1] = "127.0.0.1";
  return listen.apply(this, args);
};
"""
# Its streaming answer fails on Node 20 inside the gateway (measured with 1.15.2 on Node 20.20).
STREAM_UNAVAILABLE = ("Portkey 1.15.2 answers every streamed call with 500 on Node 20: "
                      "'tryTargetsRecursively error: immutable undefined TypeError: immutable'")


@dataclass(frozen=True, slots=True)
class Portkey:
    server: Server
    url: str
    version: str

    def headers(self, mock_openai_base: str, upstream_key: str) -> dict[str, str]:
        """The headers that route one call to the mock's OpenAI API."""
        return {"x-portkey-provider": "openai", "x-portkey-custom-host": mock_openai_base,
                "Authorization": f"Bearer {upstream_key}"}


def ensure_installed(folder: Path = FOLDER, *, install: bool = True) -> Path:
    """The start script, installing the package with npm first if it is missing."""
    script = folder / START_SCRIPT
    if script.exists():
        return script
    if not install:
        raise BenchError(f"Portkey's gateway is not installed in {folder} (run without --no-peer-install)")
    npm = find_binary("npm")
    if npm is None or find_binary("node") is None:
        raise BenchError("node and npm are needed for Portkey's gateway (apt-get install nodejs npm)")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"==> npm install {PACKAGE} in {folder}", flush=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", PACKAGE], cwd=folder,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"npm install {PACKAGE} took longer than {INSTALL_TIMEOUT_S} s") from None
    if done.returncode != 0 or not script.exists():
        raise BenchError(f"npm install {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    return script


def start_portkey(directory: Path, *, port: int, folder: Path = FOLDER) -> Portkey:
    script = ensure_installed(folder, install=False)
    preload = directory / "portkey-loopback.cjs"
    preload.write_text(LOOPBACK_PRELOAD)
    node = find_binary("node")
    assert node is not None
    server = start("portkey", [node, "-r", str(preload), str(script), f"--port={port}", "--headless"],
                   directory / "portkey.log", cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"Portkey exited with {server.process.returncode}:\n{server.log_tail()}")
        if get(url + "/")[0] != 0:  # any HTTP answer: it listens
            return Portkey(server, url, VERSION)
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"Portkey did not answer at {url} within {READY_TIMEOUT_S} s:\n{server.log_tail()}")
