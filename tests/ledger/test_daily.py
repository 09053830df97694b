"""The ledger's daily roll-up: closed days summed once from the transfers, open days live, and the
sums agree with the transfers they come from."""

from __future__ import annotations

import datetime as dt

import ledger
from tests.support.accounts import deposit
from tests.support.admin_ui import person

OLD_DEPOSIT = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro, phase,
                       kind, user_id, created_at)
SELECT $1, '\\x00', debit_account_id, credit_account_id, $2, 'posted', 'deposit', user_id,
       now() - make_interval(days => $3)
FROM transfers WHERE kind = 'deposit' LIMIT 1"""


async def balance_books(database, user_id: int, amount_micro: int) -> None:
    """Keep the stored sums in step with a transfer written straight in SQL (reconcile checks them)."""
    await database.execute("UPDATE accounts SET credits_posted = credits_posted + $2 WHERE user_id = $1",
                           user_id, amount_micro)
    await database.execute("UPDATE accounts SET debits_posted = debits_posted + $1 WHERE code = 'payment_clearing'",
                           amount_micro)


async def test_closed_days_are_rolled_up_once_and_open_days_summed_live(database):
    user = await person(database, "alice@example.com", can_log_in=False)
    await deposit(database, user, 5)
    for key, days_ago in (("a", 3), ("b", 3), ("c", 10)):
        await database.execute(OLD_DEPOSIT, key, 2_000_000, days_ago)
        await balance_books(database, user, 2_000_000)
    today = dt.datetime.now(dt.timezone.utc).date()
    totals = await ledger.daily.totals(database, today - dt.timedelta(days=29), today)
    by_day = {(t.day, t.kind, t.side): t.amount_micro for t in totals}
    assert by_day == {(today - dt.timedelta(days=3), "deposit", "to_user"): 4_000_000,
                      (today - dt.timedelta(days=10), "deposit", "to_user"): 2_000_000,
                      (today, "deposit", "to_user"): 5_000_000}
    assert await database.fetchval("SELECT count(*) FROM ledger_days_rolled") == 28  # every closed day, once
    assert await database.fetchval("SELECT count(*) FROM ledger_daily") == 2
    again = await ledger.daily.totals(database, today - dt.timedelta(days=29), today)
    assert sorted(again, key=str) == sorted(totals, key=str)
