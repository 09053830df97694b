"""Numbers for staff: users by role, live tokens, credits sold and spent per period, top spenders —
each within the actor's scope (a manager's numbers cover their clients). The JSON API's /stats and
the admin UI's dashboard read the same functions."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.accounts import users
from gateway.accounts.directory import SCOPE, SCOPED_USER_IDS

# $2: the period's start, NULL for all time.
USER_STATS = f"""
SELECT u.role, count(*) AS total, count(*) FILTER (WHERE u.is_active) AS active,
       count(*) FILTER (WHERE $2::timestamptz IS NULL OR u.created_at >= $2) AS new
FROM users u WHERE {SCOPE} GROUP BY u.role"""
ACTIVE_TOKENS = f"""
SELECT count(*) FROM access_tokens t JOIN users u ON u.id = t.user_id
WHERE {SCOPE} AND t.revoked_at IS NULL AND t.expires_at > $2"""
# Money that moved (posted transfers and posted holds) since the oldest period's start ($2, NULL:
# all time), by kind and by which side is a user's account: every transfer has one user side and
# one system side ($3: the system accounts' ids) and names that user (transfers.user_id), which is
# how the scope ($1) applies. One pass over the covering index transfers_created_idx.
CREDIT_MOVES = f"""
WITH moves AS (
    SELECT t.kind, t.amount_micro, t.created_at,
           t.debit_account_id <> ALL($3::bigint[]) AS from_user,
           t.credit_account_id <> ALL($3::bigint[]) AS to_user
    FROM transfers t
    WHERE t.phase IN ('posted', 'post_pending') AND ($2::timestamptz IS NULL OR t.created_at >= $2)
      AND ($1::bigint IS NULL OR t.user_id IN {SCOPED_USER_IDS})
)"""
# What each credit measure counts: transfers of these kinds moving money to or from the user.
MEASURES = {
    # Credits that came in from outside: payments, and admins' top-ups (an adjustment to the user).
    "sold": (("deposit", "adjustment"), "to_user"),
    "spent": (("purchase", "usage"), "from_user"),
    "refunded": (("refund",), "to_user"),
    # Bonuses net of their reversals (a reversal is a referral_bonus from the user back to promotions).
    "bonuses_in": (("referral_bonus",), "to_user"),
    "bonuses_out": (("referral_bonus",), "from_user"),
}
# A manager's clients' transfers per day, kind and side (an admin's come from ledger.daily).
SCOPED_DAILY = """
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, t.kind,
       CASE WHEN t.debit_account_id = ANY($3::bigint[]) THEN 'to_user' ELSE 'from_user' END AS side,
       sum(t.amount_micro)::bigint AS amount_micro
FROM users u JOIN transfers t ON t.user_id = u.id
WHERE u.manager_id = $1 AND u.role = 'client' AND t.phase IN ('posted', 'post_pending')
  AND t.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2, 3"""
# Every credit a user's account ever paid out (its running sum: no scan of the transfers).
TOP_SPENDERS = f"""
SELECT u.id AS user_id, u.email, u.full_name, a.debits_posted AS spent_micro,
       a.credits_posted - a.debits_posted - a.debits_pending AS available_micro
FROM accounts a JOIN users u ON u.id = a.user_id
WHERE a.kind = 'user' AND {SCOPE}
ORDER BY a.debits_posted DESC, u.id LIMIT $2"""


@dataclass(frozen=True, slots=True)
class Credits:
    sold_micro: int
    spent_micro: int
    refunded_micro: int
    bonuses_micro: int


@functools.cache
def _credit_query(periods: int) -> str:
    """CREDIT_MOVES summed once per period; period i starts at $4[i]."""
    rules = {name: f"kind IN ({', '.join(repr(kind) for kind in kinds)}) AND {side}"
             for name, (kinds, side) in MEASURES.items()}
    sums = [f"COALESCE(sum(amount_micro) FILTER (WHERE created_at >= ($4::timestamptz[])[{index}] AND {rule}), 0)"
            f"::bigint AS {name}_{index}"
            for index in range(1, periods + 1) for name, rule in rules.items()]
    return CREDIT_MOVES + "\nSELECT " + ",\n       ".join(sums) + "\nFROM moves"


async def system_account_ids(db: asyncpg.Pool | asyncpg.Connection) -> list[int]:
    return [await ledger.system_id(db, code) for code in ledger.SYSTEM_ACCOUNTS]


async def credits(db: asyncpg.Pool | asyncpg.Connection, scope: int | None,
                  since: list[dt.datetime | None]) -> list[Credits]:
    """Credits sold, spent, refunded and given as bonuses since each start (None: all time)."""
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    starts = [start or floor for start in since]
    oldest = None if any(start is None for start in since) else min(starts)
    row = await db.fetchrow(_credit_query(len(starts)), scope, oldest, await system_account_ids(db), starts)
    return [Credits(row[f"sold_{i}"], row[f"spent_{i}"], row[f"refunded_{i}"],
                    row[f"bonuses_in_{i}"] - row[f"bonuses_out_{i}"]) for i in range(1, len(starts) + 1)]


async def users_by_role(db: asyncpg.Pool | asyncpg.Connection, scope: int | None,
                        since: dt.datetime | None) -> dict[str, dict[str, int]]:
    by_role = {role: {"total": 0, "active": 0, "new": 0} for role in users.ROLES}
    for row in await db.fetch(USER_STATS, scope, since):
        by_role[row["role"]] = {"total": row["total"], "active": row["active"], "new": row["new"]}
    return by_role


async def active_tokens(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, at: dt.datetime) -> int:
    return await db.fetchval(ACTIVE_TOKENS, scope, at)


async def top_spenders(db: asyncpg.Pool | asyncpg.Connection, scope: int | None,
                       limit: int = 10) -> list[asyncpg.Record]:
    """The users whose accounts paid out the most credits over their life (purchases, AI usage,
    deductions), with what they have left."""
    return await db.fetch(TOP_SPENDERS, scope, limit)


@dataclass(frozen=True, slots=True)
class DayCredits:
    day: dt.date
    credits: Credits


def _measure(amounts: dict[tuple[str, str], int], name: str) -> int:
    kinds, side = MEASURES[name]
    return sum(amounts.get((kind, side), 0) for kind in kinds)


async def daily_credits(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, today: dt.date,
                        days: int, primary: asyncpg.Pool | None = None) -> list[DayCredits]:
    """Credits per UTC day for the `days` days up to today, oldest first: an admin's from the
    ledger's daily roll-up, a manager's summed live over their clients' transfers. `db` may be a read
    replica's: `primary` then rolls up the closed days it lacks (ledger.daily.totals)."""
    first = today - dt.timedelta(days=days - 1)
    amounts: dict[dt.date, dict[tuple[str, str], int]] = {first + dt.timedelta(days=i): {} for i in range(days)}
    if scope is None:
        rows = [(t.day, t.kind, t.side, t.amount_micro) for t in await ledger.daily.totals(db, first, today, primary)]
    else:
        fetched = await db.fetch(SCOPED_DAILY, scope, first, await system_account_ids(db))
        rows = [(r["day"], r["kind"], r["side"], r["amount_micro"]) for r in fetched]
    for day, kind, side, amount in rows:
        if day in amounts:
            amounts[day][(kind, side)] = amounts[day].get((kind, side), 0) + amount
    return [DayCredits(day, Credits(_measure(sums, "sold"), _measure(sums, "spent"), _measure(sums, "refunded"),
                                    _measure(sums, "bonuses_in") - _measure(sums, "bonuses_out")))
            for day, sums in amounts.items()]
