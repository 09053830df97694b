"""Reconciliation: stored balances against the transfers they came from, and the books in balance."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

# The holds still open, as the transfers say: a pending row no resolution names.
OPEN_HOLDS = """
SELECT p.* FROM transfers p
WHERE p.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""

# One pass over transfers: what every account's four sums must be.
EXPECTED = f"""
WITH unresolved AS ({OPEN_HOLDS}
), legs AS (
    SELECT debit_account_id AS account_id, amount_micro AS debit_posted, 0::bigint AS credit_posted,
           0::bigint AS debit_pending, 0::bigint AS credit_pending
    FROM transfers WHERE phase IN ('posted', 'post_pending')
    UNION ALL
    SELECT credit_account_id, 0, amount_micro, 0, 0 FROM transfers WHERE phase IN ('posted', 'post_pending')
    UNION ALL
    SELECT debit_account_id, 0, 0, amount_micro, 0 FROM unresolved
    UNION ALL
    SELECT credit_account_id, 0, 0, 0, amount_micro FROM unresolved
)
SELECT a.id, a.kind, a.code, a.user_id, a.overdraft_micro,
       a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
       COALESCE(sum(l.debit_posted), 0)::bigint AS expected_debits_posted,
       COALESCE(sum(l.credit_posted), 0)::bigint AS expected_credits_posted,
       COALESCE(sum(l.debit_pending), 0)::bigint AS expected_debits_pending,
       COALESCE(sum(l.credit_pending), 0)::bigint AS expected_credits_pending
FROM accounts a LEFT JOIN legs l ON l.account_id = a.id
GROUP BY a.id ORDER BY a.id"""

# Resolutions must match their hold: one that exists, same accounts, posted at most the held amount.
BAD_RESOLUTIONS = """
SELECT r.id, r.pending_id FROM transfers r LEFT JOIN transfers p ON p.id = r.pending_id
WHERE r.pending_id IS NOT NULL
  AND (p.id IS NULL OR p.phase <> 'pending'
       OR r.debit_account_id <> p.debit_account_id OR r.credit_account_id <> p.credit_account_id
       OR (r.phase = 'post_pending' AND r.amount_micro > p.amount_micro))"""

# Every transfer moves between accounts that exist and names a user that exists, if any (the table
# keeps no foreign key to them: the ledger's functions check the accounts under lock, migration 0016;
# its writers name the user whose account they read, and users are never deleted, migration 0022).
ORPHANS = """
SELECT t.id, d.id IS NULL OR c.id IS NULL AS no_account, t.user_id IS NOT NULL AND u.id IS NULL AS no_user
FROM transfers t
LEFT JOIN accounts d ON d.id = t.debit_account_id
LEFT JOIN accounts c ON c.id = t.credit_account_id
LEFT JOIN users u ON u.id = t.user_id
WHERE d.id IS NULL OR c.id IS NULL OR (t.user_id IS NOT NULL AND u.id IS NULL)
ORDER BY t.id LIMIT 100"""

# A debt's running sum on its account equals its rows: owed less repaid (ledger.debts).
BAD_DEBTS = """
SELECT a.id, a.code, a.user_id, a.owed_micro, COALESCE(d.net, 0)::bigint AS expected
FROM accounts a LEFT JOIN (
    SELECT account_id, sum(CASE WHEN kind = 'owed' THEN amount_micro ELSE -amount_micro END) AS net
    FROM debts GROUP BY account_id) d ON d.account_id = a.id
WHERE a.owed_micro <> COALESCE(d.net, 0)"""

# A budget holds what its open holds hold: held_micro equals the amounts of the budget_holds rows
# naming it whose hold is still open (migration 0013; a budget deleted meanwhile is simply absent).
BAD_BUDGETS = """
WITH held AS (
    SELECT u.budget_id, sum(l.amount_micro) AS held
    FROM budget_holds l CROSS JOIN LATERAL unnest(l.budget_ids) AS u(budget_id)
    WHERE NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = l.hold_id)
    GROUP BY u.budget_id)
SELECT b.id, b.user_id, b.api_key_id, b.held_micro, COALESCE(h.held, 0)::bigint AS expected
FROM budgets b LEFT JOIN held h ON h.budget_id = b.id
WHERE b.held_micro <> COALESCE(h.held, 0)
ORDER BY b.id"""

# A budget link lives from its hold to the hold's resolution, and holds the hold's amount; its hold
# exists (the table keeps no foreign key to transfers since migration 0019).
BAD_BUDGET_HOLDS = """
SELECT l.hold_id, p.id IS NULL AS missing,
       EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = l.hold_id) AS resolved
FROM budget_holds l LEFT JOIN transfers p ON p.id = l.hold_id
WHERE p.id IS NULL OR p.phase <> 'pending' OR l.amount_micro <> p.amount_micro
   OR EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = l.hold_id)
ORDER BY l.hold_id LIMIT 100"""

# Every usage row names a user, and a key and a hold when it names one, that exist (ai_usage keeps
# no foreign keys since migration 0019: the gateway writes its caller's ids and the hold it resolved).
# Joins, not NOT EXISTS under OR: one pass with hash joins over large tables.
USAGE_ORPHANS = """
SELECT u.id, x.id IS NULL AS no_user, u.api_key_id IS NOT NULL AND k.id IS NULL AS no_key,
       u.hold_transfer_id IS NOT NULL AND t.id IS NULL AS no_hold
FROM ai_usage u
LEFT JOIN users x ON x.id = u.user_id
LEFT JOIN api_keys k ON k.id = u.api_key_id
LEFT JOIN transfers t ON t.id = u.hold_transfer_id
WHERE x.id IS NULL OR (u.api_key_id IS NOT NULL AND k.id IS NULL)
   OR (u.hold_transfer_id IS NOT NULL AND t.id IS NULL)
ORDER BY u.id LIMIT 100"""

# The table of open holds (migration 0020) holds every open hold, as it is, and nothing else: the
# expiry sweep and the open-hold gauges read only it.
BAD_OPEN_HOLDS = f"""
WITH unresolved AS ({OPEN_HOLDS})
SELECT COALESCE(h.id, o.hold_id) AS hold_id, o.hold_id IS NULL AS missing, h.id IS NULL AS extra
FROM unresolved h FULL JOIN open_holds o ON o.hold_id = h.id
WHERE h.id IS NULL OR o.hold_id IS NULL OR o.expires_at <> h.expires_at OR o.amount_micro <> h.amount_micro
ORDER BY 1 LIMIT 100"""

SUMS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


@dataclass
class Report:
    accounts: int = 0
    transfers: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        head = f"{self.accounts} accounts, {self.transfers} transfers: "
        if self.ok:
            return head + "balanced"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join("  " + p for p in self.problems)


def _name(row: asyncpg.Record) -> str:
    return f"account {row['id']} ({row['code'] or 'user ' + str(row['user_id'])})"


async def reconcile(connection: asyncpg.Connection | asyncpg.Pool) -> Report:
    """Check every stored balance against its transfers; read in one snapshot."""
    if isinstance(connection, asyncpg.Pool):
        async with connection.acquire() as acquired:
            return await reconcile(acquired)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        return await check_books(connection)


async def check_books(connection: asyncpg.Connection) -> Report:
    """reconcile's checks, read in the connection's transaction as it stands (a test's books before
    it rolls them back); reconcile runs them in a read-only snapshot of their own."""
    report = Report()
    rows = await connection.fetch(EXPECTED)
    report.transfers = await connection.fetchval("SELECT count(*) FROM transfers")
    bad = await connection.fetch(BAD_RESOLUTIONS)
    orphans = await connection.fetch(ORPHANS)
    bad_debts = await connection.fetch(BAD_DEBTS)
    bad_budgets = await connection.fetch(BAD_BUDGETS)
    bad_links = await connection.fetch(BAD_BUDGET_HOLDS)
    usage_orphans = await connection.fetch(USAGE_ORPHANS)
    bad_open_holds = await connection.fetch(BAD_OPEN_HOLDS)
    report.accounts = len(rows)
    totals = dict.fromkeys(SUMS, 0)
    for row in rows:
        for name in SUMS:
            totals[name] += row[name]
            if row[name] != row["expected_" + name]:
                report.problems.append(
                    f"{_name(row)}: stored {name} {row[name]} != {row['expected_' + name]} from transfers")
        available = row["credits_posted"] - row["debits_posted"] - row["debits_pending"]
        if row["kind"] == "user" and available < -row["overdraft_micro"]:
            report.problems.append(f"{_name(row)}: available {available} below overdraft limit")
    if totals["debits_posted"] != totals["credits_posted"]:
        report.problems.append(f"posted debits {totals['debits_posted']} != posted credits {totals['credits_posted']}")
    if totals["debits_pending"] != totals["credits_pending"]:
        report.problems.append(
            f"pending debits {totals['debits_pending']} != pending credits {totals['credits_pending']}")
    for row in bad:
        report.problems.append(f"transfer {row['id']} does not match the hold {row['pending_id']} it resolves")
    for row in orphans:
        absent = [name for name in ("an account", "a user") if row["no_" + name.split()[1]]]
        verb = "does" if len(absent) == 1 else "do"
        report.problems.append(f"transfer {row['id']} names {' and '.join(absent)} that {verb} not exist")
    for row in bad_debts:
        report.problems.append(f"{_name(row)}: stored owed {row['owed_micro']} != {row['expected']} from debts")
    _report_budgets(report, bad_budgets, bad_links)
    for row in usage_orphans:
        missing = " and ".join(name for name in ("user", "key", "hold") if row["no_" + name])
        report.problems.append(f"usage row {row['id']} names a {missing} that does not exist")
    for row in bad_open_holds:
        what = ("is missing from" if row["missing"] else "is not open but is in" if row["extra"]
                else "does not match its row in")
        report.problems.append(f"hold {row['hold_id']} {what} the table of open holds")
    return report


def _report_budgets(report: Report, bad_budgets: list[asyncpg.Record], bad_links: list[asyncpg.Record]) -> None:
    for row in bad_budgets:
        scope = f"key {row['api_key_id']}" if row["api_key_id"] is not None else f"user {row['user_id']}"
        report.problems.append(f"budget {row['id']} ({scope}): stored held {row['held_micro']} != "
                               f"{row['expected']} from its open holds")
    for row in bad_links:
        what = "does not exist" if row["missing"] else "is resolved" if row["resolved"] else "does not match it"
        report.problems.append(f"budget link of hold {row['hold_id']}: the hold {what}")
