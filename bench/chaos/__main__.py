"""`python -m bench.chaos [--minutes M]`: faults under load, with a report in bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from bench.chaos.report import write
from bench.chaos.run import Plan, run

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0, help="go round the faults until this much time passed")
    defaults = Plan()
    parser.add_argument("--fault-s", type=float, default=defaults.fault_s, help="how long each fault is held")
    parser.add_argument("--calm-s", type=float, default=defaults.calm_s, help="steady load between faults")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (logs) after the run")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tollgate-chaos-", dir="/tmp"))
    directory.chmod(0o755)  # the postgres system user must traverse it
    try:
        plan = Plan(fault_s=args.fault_s, calm_s=args.calm_s, minutes=args.minutes)
        report = asyncio.run(run(plan, directory, progress=lambda line: print(line, flush=True)))
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"data and logs kept in {directory}")
    json_path, markdown_path = write(report, args.out)
    print(f"report: {json_path} and {markdown_path}")
    for violation in report["violations"]:
        print(f"VIOLATION {violation}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
