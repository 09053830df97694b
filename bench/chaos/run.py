"""One chaos run: start the stack, put it under steady load, inject each fault in turn, and check
after every fault (and at the end) that nothing was lost, doubled, given away or let through."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.chaos import checks
from bench.chaos.faults import FAULTS, Fault
from bench.chaos.load import CHAT, Load, lane_totals
from bench.chaos.people import People, make_people
from bench.chaos.stack import Stack, start_stack

PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 5.0
WORKERS = 2
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True, slots=True)
class Plan:
    fault_s: float = 8.0  # how long each fault is held
    calm_s: float = 4.0  # steady load between a recovery and the next fault
    recovery_bound_s: float = 30.0  # the gateway must serve again within this after a fault is lifted
    drain_s: float = 30.0  # at the end, for operations still waiting for an answer
    minutes: float = 0.0  # keep going round the faults until this much time has passed (0: one round)


class Probes:
    """Credentials that must never pass, tried all through a fault and its recovery."""

    def __init__(self, stack: Stack, people: People) -> None:
        self.stack, self.people = stack, people
        self.statuses: collections.Counter = collections.Counter()
        self.let_through: list[str] = []

    def requests(self) -> list[tuple[str, str, str, dict]]:
        people = self.people
        return [
            ("revoked_token", "GET", "/api/v1/proxy/api/data", {"headers": people.proxy_headers(people.revoked_token)}),
            ("unknown_token", "GET", "/api/v1/proxy/api/data", {"headers": people.proxy_headers(people.unknown_token)}),
            ("revoked_key", "POST", "/openai/v1/chat/completions",
             {"json": CHAT, "headers": {"Authorization": f"Bearer {people.revoked_key}"}}),
            ("unknown_key", "POST", "/openai/v1/chat/completions",
             {"json": CHAT, "headers": {"Authorization": f"Bearer {people.unknown_key}"}}),
        ]

    async def run(self, stopping: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as session:
            while not stopping.is_set():
                for name, method, path, kwargs in self.requests():
                    try:
                        async with session.request(method, self.stack.url + path, **kwargs) as response:
                            status = response.status
                            await response.read()
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        status = 0
                    self.statuses[(name, status or "error")] += 1
                    if 200 <= status < 400:
                        self.let_through.append(f"{name}: {method} {path} answered {status}")
                await asyncio.sleep(PROBE_INTERVAL_S)


async def recovered(stack: Stack, people: People, bound_s: float) -> float | None:
    """Seconds until the gateway serves a desktop and an AI request again with all its workers."""
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as session:
        while time.monotonic() - started < bound_s:
            try:
                async with session.get(stack.url + "/api/v1/proxy/api/data",
                                       headers=people.proxy_headers()) as desktop:
                    desktop_ok = desktop.status == 200
                async with session.post(stack.url + "/openai/v1/chat/completions", json=CHAT,
                                        headers={"Authorization": f"Bearer {people.api_key}"}) as ai:
                    ai_ok = ai.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                desktop_ok = ai_ok = False
            if desktop_ok and ai_ok and len(stack.worker_pids()) == WORKERS:
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.2)
    return None


def _delta(after: collections.Counter, before: collections.Counter) -> collections.Counter:
    return collections.Counter({key: after[key] - before[key] for key in after if after[key] - before[key]})


async def phase(stack: Stack, load: Load, people: People, fault: Fault, plan: Plan) -> dict:
    """Inject one fault under load, lift it, wait for recovery, let the load settle, check everything."""
    before = collections.Counter(load.observed.statuses)
    probes, probing = Probes(stack, people), asyncio.Event()
    probe_task = asyncio.create_task(probes.run(probing))
    started = time.monotonic()
    injected = await fault.inject(stack)
    await asyncio.sleep(plan.fault_s)
    lifted = await fault.lift(stack)
    recovery_s = await recovered(stack, people, plan.recovery_bound_s)
    probing.set()
    await probe_task
    await asyncio.sleep(plan.calm_s)
    violations = list(probes.let_through)
    if recovery_s is None:
        violations.append(f"not serving {plan.recovery_bound_s} s after the fault was lifted")
    money_violations, numbers = await checks.money(stack, load.observed, people.user_id)
    books_violations, books_line = await checks.books(stack)
    violations += money_violations + books_violations
    return {"fault": fault.name, "injected": injected, "lifted": lifted, "held_s": plan.fault_s,
            "recovered_in_s": recovery_s, "took_s": round(time.monotonic() - started, 1),
            "answers": lane_totals(_delta(load.observed.statuses, before)),
            "probes": lane_totals(probes.statuses), "reconcile": books_line, "ledger": numbers,
            "violations": violations}


async def finish(stack: Stack, load: Load, people: People, plan: Plan, hold_ttl_s: float, seen: set[str]) -> dict:
    """Stop the load, let every hold reach its expiry and a sweep, and check once more."""
    await load.stop(plan.drain_s)
    await checks.holds_resolved(stack, hold_ttl_s + checks.SWEEP_GRACE_S)
    violations, numbers = await checks.money(stack, load.observed, people.user_id)
    books_violations, books_line = await checks.books(stack)
    if numbers["holds_open_now"]:
        violations.append(f"{numbers['holds_open_now']} hold(s) still open after the load stopped and they expired")
    unanswered = list(load.observed.unanswered)
    if unanswered:
        violations.append(f"{len(unanswered)} money operation(s) never answered: {unanswered[:5]}")
    return {"ledger": numbers, "reconcile": books_line, "violations": [v for v in violations + books_violations
                                                                       if v not in seen],
            "answers": lane_totals(load.observed.statuses), "retries": dict(load.observed.retries)}


def log_findings(log_path: Path) -> dict:
    """Tracebacks and error lines the gateway logged during the run."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = text.splitlines()
    errors = [line for line in lines if " ERROR" in line or "CRITICAL" in line]
    return {"tracebacks": text.count(TRACEBACK), "error_lines": len(errors), "error_examples": errors[:10]}


async def run(plan: Plan, directory: Path, progress=print) -> dict:
    started_at = time.time()
    stack = await start_stack(directory)
    load: Load | None = None
    try:
        people = await make_people(stack.url, stack.database_url)
        load = Load(stack.url, people, stack.stripe)
        await load.start()
        await asyncio.sleep(plan.calm_s)
        phases: list[dict] = []
        seen: set[str] = set()  # violations found after an earlier fault are not counted again
        while True:
            for fault in FAULTS:
                progress(f"-- {fault.name}")
                phases.append(await phase(stack, load, people, fault, plan))
                phases[-1]["violations"] = [v for v in phases[-1]["violations"] if v not in seen]
                seen.update(phases[-1]["violations"])
                progress(f"   recovered in {phases[-1]['recovered_in_s']} s; violations: "
                         f"{phases[-1]['violations'] or 'none'}")
            if time.time() - started_at >= plan.minutes * 60:
                break
        progress("-- the end: load stopped, holds left to expire, checks")
        final = await finish(stack, load, people, plan, float(stack.env["TOLLGATE_AI_HOLD_TTL_S"]), seen)
    finally:
        if load is not None and not load.stopping.is_set():  # the run failed: stop the load first
            await load.stop(0)
        await stack.stop()
    violations = [f"{p['fault']}: {v}" for p in phases for v in p["violations"]] + \
                 [f"end: {v}" for v in final["violations"]]
    return {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
            "duration_s": round(time.time() - started_at, 1), "plan": dataclasses.asdict(plan), "workers": WORKERS,
            "phases": phases, "final": final, "log": log_findings(stack.log_path),
            "violations": violations, "ok": not violations}
