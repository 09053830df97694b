"""bench.processes: the CPU a process tree used counts the children that exited meanwhile."""

from __future__ import annotations

import subprocess
import sys

from bench.processes import cpu_seconds

# A child that burns 0.3 s of CPU and exits, reaped by its parent, which then waits to be measured.
PARENT = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.3: pass"], check=True)
print("reaped", flush=True)
time.sleep(30)
"""


def test_a_tree_counts_the_cpu_of_a_child_that_exited_and_was_reaped():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "reaped"
        assert cpu_seconds({"tree": parent.pid})["tree"] >= 0.3
    finally:
        parent.kill()
        parent.wait()
