"""Random ledger histories played two ways (the differential test of ledger_batch, decision 0021):
item by item through the per-item functions (ledger_move, ledger_move_within_budgets,
ledger_resolve) and in batches through ledger_batch, on the same books, each in a transaction of
its own that is rolled back. Both must answer every item alike and leave the same sums."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from hypothesis import strategies as st

import ledger
from gateway.accounts import budgets, users
from ledger.batches import BATCH, encode
from ledger.reconcile import check_books
from ledger.transfers import MOVE, RESOLVE, move_item, resolve_item

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
UNIT = 1_000_000
# The accounts an item may name: three users (the first with a budget of 5 units a day, the last
# with an overdraft of 2 units), the revenue account, and one that does not exist.
NAMES = ("budgeted", "plain", "overdrawn", "revenue", "missing")
MISSING_ACCOUNT = 10**12
# A resolution's target: a move of an earlier batch (by its position among all items), a posted
# transfer, no transfer at all, or a hold written around the ledger whose debit account does not exist.
TARGETS = ("posted", "nowhere", "orphan")
POSTS = ("void", "zero", "part", "all", "over")

# Mostly users paying revenue, now and then the other way round, between users, or an account
# that does not exist; mostly holds (AI calls), often within the budget.
DEBITS = ("budgeted",) * 4 + ("plain",) * 2 + ("overdrawn",) * 3 + ("revenue", "missing")
CREDITS = ("revenue",) * 6 + ("plain", "budgeted", "missing")
move_ops = st.tuples(st.just("move"), st.integers(0, 9), st.sampled_from(DEBITS), st.sampled_from(CREDITS),
                     st.integers(1, 4), st.sampled_from((True, True, False)), st.booleans()
                     ).filter(lambda op: op[2] != op[3])
resolve_ops = st.tuples(st.just("resolve"), st.integers(0, 9),
                        st.one_of(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.sampled_from(TARGETS)),
                        st.sampled_from(POSTS), st.sampled_from((False, False, True)), st.booleans())
twin_ops = st.tuples(st.just("twin"), st.integers(1, 6))
# A history: batches of items, each item a move (key, debit, credit, units, hold?, budgeted?), a
# resolution (key, target, post, late?, expiring?) or the twin of an earlier item (same key, same content).
histories = st.lists(st.lists(st.one_of(move_ops, move_ops, resolve_ops, resolve_ops, twin_ops), min_size=1,
                              max_size=8), min_size=2, max_size=5)

@dataclass
class Books:
    accounts: dict[str, int]
    users: dict[str, int | None]
    posted: int     # a posted transfer: no hold
    orphan: int     # a hold naming an account that does not exist
    problems: list[str]  # reconcile's before any item but the pending totals: the orphan's


async def open_books(connection: asyncpg.Connection) -> Books:
    """The accounts, a budget, an overdraft and the odd transfers, in the caller's transaction."""
    accounts: dict[str, int] = {}
    user_ids: dict[str, int | None] = {"revenue": None, "missing": None}
    clearing = await ledger.system_id(connection, "payment_clearing")
    posted = 0
    for name in NAMES[:3]:
        user_ids[name] = await users.ensure_client(connection, email=f"model-{name}@example.com")
        accounts[name] = await ledger.user_account(connection, user_ids[name])
        deposit = await ledger.move(connection, key=f"model-deposit:{name}", debit=clearing, credit=accounts[name],
                                    amount_micro=6 * UNIT, kind="deposit", now=NOW, user_id=user_ids[name])
        posted = deposit.id
    accounts["revenue"] = await ledger.system_id(connection, "revenue")
    accounts["missing"] = MISSING_ACCOUNT
    await connection.execute("UPDATE accounts SET overdraft_micro = $2 WHERE id = $1", accounts["overdrawn"], 2 * UNIT)
    await budgets.put(connection, user_id=user_ids["budgeted"], key_id=None, spec=budgets.BudgetSpec(5 * UNIT, "day"),
                      now=NOW)
    orphan = await connection.fetchval(
        "INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro,"
        " phase, kind, expires_at) VALUES ('model-orphan', '', $1, $2, $3, 'pending', 'usage', $4) RETURNING id",
        MISSING_ACCOUNT, accounts["revenue"], UNIT, NOW + dt.timedelta(minutes=5))
    await connection.execute("UPDATE accounts SET credits_pending = credits_pending + $2 WHERE id = $1",
                             accounts["revenue"], UNIT)  # the orphan's credit leg, as the ledger would write it
    problems = [p for p in (await check_books(connection)).problems if not p.startswith("pending debits ")]
    return Books(accounts, user_ids, posted, orphan, problems)


def flatten(history: list[list[tuple]]) -> list[tuple[int, tuple]]:
    """(batch number, op) per item, twins replaced by the item they copy, targets by an earlier
    batch's hold (by position: its move may have been refused) or one of TARGETS."""
    items: list[tuple[int, tuple]] = []
    for number, batch in enumerate(history):
        earlier_moves = [index for index, (n, op) in enumerate(items) if n < number and op[0] == "move" and op[5]]
        for op in batch:
            if op[0] == "twin":
                if not items:
                    continue
                op = items[max(0, len(items) - op[1])][1]
            elif op[0] == "resolve" and isinstance(op[2], int):
                op = (*op[:2], earlier_moves[op[2] % len(earlier_moves)] if earlier_moves else "nowhere", *op[3:])
            items.append((number, op))
    return items


def item(books: Books, ops: list[tuple[int, tuple]], op: tuple, holds: dict[int, int | None]) -> dict[str, Any]:
    """The ledger_batch item of `op`; a resolution's hold is the transfer its target move got on this path."""
    if op[0] == "move":
        _, key, debit, credit, units, hold, budgeted = op
        fields = move_item(key=f"k{key}", debit=books.accounts[debit], credit=books.accounts[credit],
                           amount_micro=units * UNIT, kind="usage" if hold else "adjustment", now=NOW,
                           user_id=books.users[debit], hold_until=NOW + dt.timedelta(minutes=5) if hold else None)
        return {**fields, "budgeted": budgeted, "api_key_id": None}
    _, key, target, post, late, expiring = op
    if isinstance(target, int):
        hold_id, held = holds.get(target) or 0, ops[target][1][4] * UNIT
    else:
        hold_id, held = {"posted": books.posted, "nowhere": 0, "orphan": books.orphan}[target], UNIT
    amount = {"void": None, "zero": 0, "part": held // 2, "all": held, "over": held + 1}[post]
    return resolve_item(key=f"k{key}", hold_id=hold_id, now=NOW + dt.timedelta(minutes=10 if late else 0),
                        post_micro=amount, expiring=expiring)


async def one_by_one(connection: asyncpg.Connection, fields: dict[str, Any]) -> asyncpg.Record:
    """The item through its per-item function, as ledger.move / ledger.resolve send it."""
    metadata = orjson.dumps(fields["metadata"]).decode()
    if fields["op"] == "resolve":
        return await connection.fetchrow(RESOLVE, fields["key"], fields["hash"], fields["hold_id"], fields["phase"],
                                         fields["post"], fields["expiring"], metadata, fields["now"])
    arguments = (fields["key"], fields["hash"], fields["debit"], fields["credit"], fields["amount"], fields["phase"],
                 fields["kind"], fields["expires_at"], fields["user_id"], fields["description"], metadata,
                 fields["now"])
    if fields["budgeted"] and fields["phase"] == "pending":
        return await connection.fetchrow(budgets.BUDGETED_MOVE, *arguments, fields["api_key_id"])
    return await connection.fetchrow(MOVE, *arguments)


def answer(row: asyncpg.Record) -> tuple:
    """What an item's answer says, without the ids that differ between the two paths."""
    transfer = (row["idempotency_key"], row["debit_account_id"], row["credit_account_id"], row["amount_micro"],
                row["phase"], row["kind"], row["user_id"]) if row["id"] is not None else None
    return row["status"], row["detail"], transfer


async def play(connection: asyncpg.Connection, books: Books, history: list[list[tuple]], *,
               batched: bool) -> dict[str, Any]:
    """The history on this path: every item's answer, the books' sums, and reconcile's problems."""
    ops = flatten(history)
    holds: dict[int, int | None] = {}
    answers: list[tuple] = []
    for number in range(len(history)):
        positions = [position for position, (n, _) in enumerate(ops) if n == number]
        fields = [item(books, ops, ops[position][1], holds) for position in positions]
        if batched:
            rows = await connection.fetch(BATCH, encode(fields)) if fields else []
        else:
            rows = [await one_by_one(connection, one) for one in fields]
        for position, row in zip(positions, rows):
            answers.append(answer(row))
            holds[position] = row["id"] if row["phase"] == "pending" else None
    report = await check_books(connection)
    return {"answers": answers, "sums": await sums(connection, books), "problems": report.problems}


async def sums(connection: asyncpg.Connection, books: Books) -> dict[str, Any]:
    accounts = await connection.fetch(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending FROM accounts"
        " WHERE id = ANY($1::bigint[]) ORDER BY id", list(books.accounts.values()))
    budget = await connection.fetchrow("SELECT spent_micro, held_micro, window_start FROM budgets")
    return {"accounts": [tuple(row) for row in accounts], "budget": tuple(budget),
            "links": await connection.fetchval("SELECT count(*) FROM budget_holds"),
            "transfers": await connection.fetchval("SELECT count(*) FROM transfers")}
