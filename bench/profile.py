"""An optional py-spy sample of tollgate during a measured run, summarised as its hottest frames."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.processes import find_binary

SAMPLES_PER_S = 100
TOP_FRAMES = 15
WALL_MARGIN_S = 30


def py_spy() -> str | None:
    """py-spy next to this interpreter or on PATH (`pip install py-spy`); None when absent."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else find_binary("py-spy")


def start(pid: int, seconds: int, out_path: Path) -> subprocess.Popen:
    """Sample `pid` and its worker processes for `seconds`, in py-spy's collapsed-stack format."""
    binary = py_spy()
    assert binary is not None
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds),
            "--rate", str(SAMPLES_PER_S), "--format", "raw", "--output", str(out_path), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, seconds: int) -> str:
    _out, err = process.communicate(timeout=seconds + WALL_MARGIN_S)
    return err if process.returncode else ""


def _frame(raw: str) -> str:
    """`function (module path)`: the project's modules from their package root (gateway/proxy/x.py),
    others by their last two parts (aiohttp/client.py)."""
    # py-spy writes "function (path/to/module.py:line)"; the line number splits one function in many.
    name, _, where = raw.partition(" (")
    path = where.removesuffix(")").rsplit(":", 1)[0]
    rooted = "/" + path  # absolute, or relative to the checkout
    for root in ("/gateway/", "/ledger/"):
        if root in rooted and "/site-packages/" not in path:
            return f"{name} ({root[1:]}{rooted.rsplit(root, 1)[1]})"
    module = path.rsplit("/", 2)[-2:]
    return f"{name} ({'/'.join(module)})" if where else name


def summarise(collapsed: str, top: int = TOP_FRAMES) -> dict:
    """The hottest frames by own samples, and tollgate's own functions by inclusive share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the process label
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    # cli.py and server.py are the entry points, under every sample of the process.
    gateway = Counter({f: n for f, n in inclusive.items()
                       if "(gateway/" in f and not f.endswith(("(gateway/cli.py)", "(gateway/server.py)"))})
    return {"samples": total,
            "self_pct": [[f, share(n)] for f, n in own.most_common(top)],
            "gateway_inclusive_pct": [[f, share(n)] for f, n in gateway.most_common(top)]}


def _project_frame(raw: str, roots: tuple[str, ...]) -> str | None:
    """`function (package/module.py)` for a frame in one of the project's packages, else None."""
    name, _, where = raw.partition(" (")
    path = where.removesuffix(")").rsplit(":", 1)[0]
    if not path.startswith(roots) or path.endswith(("gateway/cli.py", "gateway/server.py")):
        return None
    return f"{name} ({path})"


def attribute(collapsed: str, roots: tuple[str, ...] = ("gateway/", "ledger/"), top: int = 25) -> dict:
    """Each sample charged to the innermost project function on its stack (that function's own code
    plus the library calls it makes directly), and the project functions by inclusive share.
    Full module paths, so gateway/ai/* and ledger/* count as the project's own."""
    innermost: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        mine = [f for f in (_project_frame(raw, roots) for raw in stack.split(";")[1:]) if f]
        innermost[mine[-1] if mine else "(outside the project: event loop, I/O, libraries)"] += count
        for frame in set(mine):
            inclusive[frame] += count
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total,
            "innermost_project_pct": [[f, share(n)] for f, n in innermost.most_common(top)],
            "project_inclusive_pct": [[f, share(n)] for f, n in inclusive.most_common(top)]}
