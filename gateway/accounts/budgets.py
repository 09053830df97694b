"""Budgets: a credit cap on AI usage per API key or per user over a period (a UTC day, a week from
Monday, a month, or in total), enforced in the statement that places an AI call's hold (migration
0013: the budget rows are locked, checked and charged there, so parallel calls never overshoot), and
given back or corrected by the hold's resolution, whoever resolves it. A soft alert fires once per
window when what was spent reaches the budget's alert share: logged, counted and audited by a
background sweep (off the hot path)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

import ledger
from gateway.accounts import audit
from gateway.core import metrics
from gateway.core.clock import Clock
from gateway.core.errors import BadRequest
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

PERIODS = ("day", "week", "month", "total")
ALERT_PERCENT_DEFAULT = 80
# ledger_move's call wrapped in the budgets' check and charge: MOVE's twelve parameters, then the key id.
BUDGETED_MOVE = """
SELECT m.status, m.detail, (m.transfer).*
FROM ledger_move_within_budgets($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) AS m"""
# A budget set (or changed): a new period starts counting from what the ledger charged in its current
# window (the usage rows are written in the statement that posts each charge); the same period keeps
# its running sums and alert.
UPSERT = """
INSERT INTO budgets (user_id, api_key_id, period, limit_micro, alert_percent, window_start, spent_micro, updated_at)
VALUES ($1, $2, $3, $4, $5, budget_window($3, $6),
        (SELECT coalesce(sum(a.charged_micro), 0) FROM ai_usage a
         WHERE a.user_id = $1 AND ($2::bigint IS NULL OR a.api_key_id = $2)
           AND a.created_at >= budget_window($3, $6)), $6)
ON CONFLICT (user_id, api_key_id) DO UPDATE SET
    limit_micro = EXCLUDED.limit_micro, alert_percent = EXCLUDED.alert_percent, updated_at = EXCLUDED.updated_at,
    spent_micro = CASE WHEN budgets.period = EXCLUDED.period THEN budgets.spent_micro ELSE EXCLUDED.spent_micro END,
    window_start = CASE WHEN budgets.period = EXCLUDED.period THEN budgets.window_start
                        ELSE EXCLUDED.window_start END,
    alerted_window = CASE WHEN budgets.period = EXCLUDED.period THEN budgets.alerted_window END,
    period = EXCLUDED.period"""
DELETE = "DELETE FROM budgets WHERE user_id = $1 AND api_key_id IS NOT DISTINCT FROM $2"
# What a budget shows at $2: the window's spend (0 once the window has passed without a call).
COLUMNS = """
b.id, b.user_id, b.api_key_id, b.period, b.limit_micro, b.alert_percent, b.held_micro,
greatest(b.window_start, budget_window(b.period, $2)) AS window_start,
CASE WHEN b.window_start >= budget_window(b.period, $2) THEN b.spent_micro ELSE 0 END AS spent_micro"""
SELECT_FOR_KEYS = f"SELECT {COLUMNS} FROM budgets b WHERE b.api_key_id = ANY($1::bigint[])"
SELECT_FOR_USER = f"SELECT {COLUMNS} FROM budgets b WHERE b.user_id = $1 AND b.api_key_id IS NULL"
# Claims the alerts due (each budget once per window), whichever worker sweeps first.
CLAIM_ALERTS = """
UPDATE budgets b SET alerted_window = b.window_start
WHERE b.alert_percent > 0 AND b.alerted_window IS DISTINCT FROM b.window_start
  AND b.spent_micro::numeric * 100 >= b.limit_micro::numeric * b.alert_percent
  AND b.window_start >= budget_window(b.period, $1)
RETURNING b.id, b.user_id, b.api_key_id, b.period, b.limit_micro, b.spent_micro, b.alert_percent, b.window_start"""


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    limit_micro: int
    period: str
    alert_percent: int = ALERT_PERCENT_DEFAULT


def parse(value: Any, name: str = "budget") -> BudgetSpec | None:
    """{"limit": "10.5", "period": "day|week|month|total", "alert_percent"?: 0..100}, or null (none)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: an object {{limit, period, alert_percent?}} or null", code="invalid_field")
    unknown = sorted(set(value) - {"limit", "period", "alert_percent"})
    if unknown:
        raise BadRequest(f"{name}: unknown field(s) {', '.join(unknown)}", code="unknown_field")
    try:
        limit = ledger.parse_credits(value.get("limit"))
    except ledger.MoneyError as error:
        raise BadRequest(f"{name}.limit: {error}", code="invalid_field") from error
    if not 0 < limit <= ledger.AMOUNT_MAX_MICRO:
        raise BadRequest(f"{name}.limit: a positive amount of credits", code="invalid_field")
    period = value.get("period")
    if period not in PERIODS:
        raise BadRequest(f"{name}.period: one of {', '.join(PERIODS)}", code="invalid_field")
    alert = value.get("alert_percent", ALERT_PERCENT_DEFAULT)
    if isinstance(alert, bool) or not isinstance(alert, int) or not 0 <= alert <= 100:
        raise BadRequest(f"{name}.alert_percent: 0 (no alert) to 100", code="invalid_field")
    return BudgetSpec(limit, period, alert)


async def put(connection: asyncpg.Connection, *, user_id: int, key_id: int | None, spec: BudgetSpec | None,
              now: dt.datetime) -> None:
    """Set (or with None remove) the budget of a key, or of the user (key_id None)."""
    if spec is None:
        await connection.execute(DELETE, user_id, key_id)
        return
    await connection.execute(UPSERT, user_id, key_id, spec.period, spec.limit_micro, spec.alert_percent, now)


async def of_keys(db: asyncpg.Pool | asyncpg.Connection, key_ids: list[int],
                  now: dt.datetime) -> dict[int, asyncpg.Record]:
    return {row["api_key_id"]: row for row in await db.fetch(SELECT_FOR_KEYS, key_ids, now)}


async def of_user(db: asyncpg.Pool | asyncpg.Connection, user_id: int, now: dt.datetime) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_FOR_USER, user_id, now)


def window_end(period: str, start: dt.datetime) -> dt.datetime | None:
    """When the window that starts at `start` ends (None: a total budget never resets)."""
    if period == "day":
        return start + dt.timedelta(days=1)
    if period == "week":
        return start + dt.timedelta(days=7)
    if period == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return None


def budget_json(row: asyncpg.Record | None) -> dict | None:
    """The budget and the spend so far in its window (decimal strings of credits)."""
    if row is None:
        return None
    ends = window_end(row["period"], row["window_start"])
    remaining = max(0, row["limit_micro"] - row["spent_micro"] - row["held_micro"])
    return {"limit": ledger.format_micro(row["limit_micro"]), "period": row["period"],
            "alert_percent": row["alert_percent"], "spent": ledger.format_micro(row["spent_micro"]),
            "held": ledger.format_micro(row["held_micro"]), "remaining": ledger.format_micro(remaining),
            "window_start": row["window_start"].isoformat() if row["period"] != "total" else None,
            "resets_at": ends.isoformat() if ends else None}


async def alert_once(pool: asyncpg.Pool, now: dt.datetime) -> int:
    """Give every alert that is due, once per budget and window: a log line, a metric, an audit entry
    (the change and its entry commit together). Returns how many."""
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(CLAIM_ALERTS, now)
        for row in rows:
            scope = "user" if row["api_key_id"] is None else "key"
            log.warning("budget alert: %s budget %d of user %d at %s of %s credits (%d%% alert) this %s", scope,
                        row["id"], row["user_id"], ledger.format_micro(row["spent_micro"]),
                        ledger.format_micro(row["limit_micro"]), row["alert_percent"], row["period"])
            metrics.labelled(metrics.BUDGET_ALERTS, scope).inc()
            await audit.record(connection, actor_id=None, action="budget.alert", target_type=f"{scope}_budget",
                               target_id=row["api_key_id"] or row["user_id"], ip="",
                               details={"user_id": row["user_id"], "api_key_id": row["api_key_id"],
                                        "period": row["period"], "limit_micro": row["limit_micro"],
                                        "spent_micro": row["spent_micro"], "alert_percent": row["alert_percent"],
                                        "window_start": row["window_start"].isoformat()})
    return len(rows)


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await alert_once(pool, dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc))
        except POSTGRES_FAILURES as error:
            log.warning("budget alert sweep failed: %s", type(error).__name__)
