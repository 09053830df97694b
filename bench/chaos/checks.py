"""The invariants the chaos run checks after every fault and at the end, against the ledger itself.

Each check returns a list of violations (empty: it held) and a few numbers for the report.
"""

from __future__ import annotations

import asyncio

import asyncpg

from bench.chaos.load import Observed
from bench.chaos.stack import Stack, reconcile

# A hold may stay open up to its expiry plus one sweep (TOLLGATE_HOLD_EXPIRY_INTERVAL_S) and a margin.
SWEEP_GRACE_S = 5
# An AI call is settled just after its answer: give the latest ones this long before looking.
SETTLE_GRACE_S = 1.0
CONNECT_TIMEOUT_S = 10

PURCHASES = """
SELECT idempotency_key, id FROM transfers WHERE kind = 'purchase' AND idempotency_key = ANY($1::text[])"""
CHAOS_PURCHASES = """
SELECT count(*) FROM transfers WHERE kind = 'purchase' AND user_id = $1 AND idempotency_key LIKE $2"""
REFUNDS = "SELECT idempotency_key, id FROM transfers WHERE kind = 'refund' AND idempotency_key = ANY($1::text[])"
DEPOSITS = """
SELECT (metadata->>'payment_id')::bigint AS payment_id, count(*) AS credited FROM transfers
WHERE kind = 'deposit' AND (metadata->>'payment_id')::bigint = ANY($1::bigint[]) GROUP BY 1"""
CHARGES = """
SELECT u.request_id, count(*) AS rows, sum(u.charged_micro) AS charged_micro,
       bool_and(r.phase = 'post_pending') AS posted
FROM ai_usage u LEFT JOIN transfers r ON r.pending_id = u.hold_transfer_id
WHERE u.request_id = ANY($1::text[]) GROUP BY u.request_id"""
OVERDUE_HOLDS = """
SELECT count(*) FROM transfers p WHERE p.phase = 'pending' AND p.expires_at < now() - make_interval(secs => $1)
AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""
OPEN_HOLDS = """
SELECT count(*) FROM transfers p WHERE p.phase = 'pending'
AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""


async def money(stack: Stack, observed: Observed, user_id: int) -> tuple[list[str], dict[str, int]]:
    """Every acknowledged purchase, refund, payment and AI charge is in the ledger exactly once."""
    await asyncio.sleep(SETTLE_GRACE_S)
    connection = await asyncpg.connect(stack.database_url, timeout=CONNECT_TIMEOUT_S)
    try:
        violations = await _purchases(connection, observed, user_id)
        violations += await _refunds(connection, observed)
        violations += await _payments(connection, observed)
        violations += await _charges(connection, observed)
        overdue = await connection.fetchval(OVERDUE_HOLDS, SWEEP_GRACE_S)
        still_open = await connection.fetchval(OPEN_HOLDS)
    finally:
        await connection.close()
    if overdue:
        violations.append(f"{overdue} hold(s) open past their expiry and a sweep")
    bad_replays = [key for key, replayed in observed.replays if not replayed]
    if bad_replays:
        violations.append(f"{len(bad_replays)} idempotent retries did not replay, e.g. {bad_replays[:3]}")
    numbers = {"purchases": len(observed.purchases), "replays": len(observed.replays),
               "refunds": len(observed.refunds) + len(observed.refunds_unknown), "payments": len(observed.payments),
               "ai_charges": len(observed.charges), "holds_open_now": int(still_open), "holds_overdue": int(overdue)}
    return violations, numbers


async def _purchases(connection: asyncpg.Connection, observed: Observed, user_id: int) -> list[str]:
    acknowledged = dict(observed.purchases)
    keys = {f"purchase:{user_id}:client:{key}": transfer_id for key, transfer_id in acknowledged.items()}
    found = {row["idempotency_key"]: row["id"] for row in await connection.fetch(PURCHASES, list(keys))}
    violations = [f"purchase {key} acknowledged as transfer {transfer_id}, ledger has {found.get(key)}"
                  for key, transfer_id in keys.items() if found.get(key) != transfer_id]
    # Purchases the run made but no client heard of: only operations still in flight may be there.
    made = await connection.fetchval(CHAOS_PURCHASES, user_id, f"purchase:{user_id}:client:chaos-%")
    in_flight = made - len(acknowledged)
    if in_flight > 1 + len(observed.unanswered):
        violations.append(f"{in_flight} purchases in the ledger that no client was told of")
    return violations


async def _refunds(connection: asyncpg.Connection, observed: Observed) -> list[str]:
    acknowledged = dict(observed.refunds)
    unknown = set(observed.refunds_unknown)
    keys = [f"refund:token:{token_id}" for token_id in [*acknowledged, *unknown]]
    found = {row["idempotency_key"]: row["id"] for row in await connection.fetch(REFUNDS, keys)}
    violations = [f"refund of token {token_id} acknowledged as transfer {transfer_id}, ledger has "
                  f"{found.get(f'refund:token:{token_id}')}" for token_id, transfer_id in acknowledged.items()
                  if found.get(f"refund:token:{token_id}") != transfer_id]
    violations += [f"token {token_id} was revoked (409 on a retry) but has no refund" for token_id in unknown
                   if f"refund:token:{token_id}" not in found]
    return violations


async def _payments(connection: asyncpg.Connection, observed: Observed) -> list[str]:
    paid = list(dict(observed.payments))
    credited = {row["payment_id"]: row["credited"] for row in await connection.fetch(DEPOSITS, paid)}
    return [f"payment {payment_id} webhook taken, credited {credited.get(payment_id, 0)} times" for payment_id in paid
            if credited.get(payment_id, 0) != 1]


async def _charges(connection: asyncpg.Connection, observed: Observed) -> list[str]:
    request_ids = list(observed.charges)
    rows = {row["request_id"]: row for row in await connection.fetch(CHARGES, request_ids)}
    missing = [rid for rid in request_ids if rid not in rows]
    wrong = [rid for rid, row in rows.items() if row["rows"] != 1 or not row["posted"] or not row["charged_micro"]]
    violations = []
    if missing:
        violations.append(f"{len(missing)} AI calls answered in full but not charged, e.g. {missing[:3]}")
    if wrong:
        violations.append(f"{len(wrong)} AI calls charged other than once, e.g. {wrong[:3]}")
    return violations


async def holds_resolved(stack: Stack, timeout_s: float) -> None:
    """Wait (at most `timeout_s`: a hold's lifetime and a sweep) until no hold is open."""
    connection = await asyncpg.connect(stack.database_url, timeout=CONNECT_TIMEOUT_S)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await connection.fetchval(OPEN_HOLDS) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def books(stack: Stack) -> tuple[list[str], str]:
    """`tollgate reconcile` passes; its verdict line for the report."""
    passed, output = await asyncio.to_thread(reconcile, stack)
    lines = output.strip().splitlines()
    return ([] if passed else [f"tollgate reconcile failed: {output}"]), lines[-1] if lines else ""
