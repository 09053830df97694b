"""One bench run's frame: a temporary directory, the servers it starts stopped in reverse however the
run ends (Ctrl-C, SIGTERM, an error), and the exit code of a run that did not finish."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import wrk
from bench.processes import BenchError
from devkit.embedded import EmbeddedError


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run(prefix: str, keep_temp: bool, measure: Callable[[Path, list], dict]) -> dict | int:
    """measure(directory, stopping)'s results, or the exit code when it was interrupted (130) or
    failed (1); `stopping` collects the callables that stop what measure started."""
    signal.signal(signal.SIGTERM, _interrupt)
    stopping: list = []
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    directory.chmod(0o755)  # PostgreSQL runs as the postgres user and must traverse it
    try:
        return measure(directory, stopping)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    except (BenchError, EmbeddedError, wrk.WrkError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not leave servers running half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for stop in reversed(stopping):
            stop()
        if keep_temp:
            print(f"temporary directory kept: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
