"""The chaos run's report: the JSON as measured, and a markdown page a person reads."""

from __future__ import annotations

import json
from pathlib import Path


def _answers(answers: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{lane} " + ", ".join(f"{status}×{count}" for status, count in statuses.items())
                     for lane, statuses in answers.items())


def markdown(report: dict) -> str:
    lines = [f"# Chaos run {report['started_at']}", "",
             f"`python -m bench.chaos` — {report['duration_s']} s, `tollgate serve --workers {report['workers']}` "
             f"on real PostgreSQL and Redis, plan {report['plan']}.", "",
             f"**Result: {'every check held' if report['ok'] else 'VIOLATIONS'}**", ""]
    lines += ["| fault | what was done | recovered in | answers during the fault and recovery | "
              "probes (revoked/unknown credentials) | violations |", "|---|---|---|---|---|---|"]
    for phase in report["phases"]:
        recovered = f"{phase['recovered_in_s']} s" if phase["recovered_in_s"] is not None else "NOT"
        lines.append(f"| {phase['fault']} | {phase['injected']}; then {phase['lifted']} | {recovered} | "
                     f"{_answers(phase['answers'])} | {_answers(phase['probes'])} | "
                     f"{'; '.join(phase['violations']) or 'none'} |")
    final = report["final"]
    lines += ["", "## At the end", "",
              f"- Ledger: {final['ledger']}",
              f"- `tollgate reconcile`: {final['reconcile']}",
              f"- Retried sends (same idempotency key, or a webhook redelivered): {final['retries']}",
              f"- All answers: {_answers(final['answers'])}",
              f"- Gateway log: {report['log']['tracebacks']} traceback(s), "
              f"{report['log']['error_lines']} error line(s)"]
    lines += [f"  - `{line[:200]}`" for line in report["log"]["error_examples"]]
    if report["violations"]:
        lines += ["", "## Violations", ""] + [f"- {violation}" for violation in report["violations"]]
    return "\n".join(lines) + "\n"


def write(report: dict, directory: Path) -> tuple[Path, Path]:
    """chaos-<time>.json, and chaos-latest.md (the last long run, as committed)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace("-", "").replace(":", "")
    json_path = directory / f"chaos-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path = directory / "chaos-latest.md"
    markdown_path.write_text(markdown(report))
    return json_path, markdown_path
