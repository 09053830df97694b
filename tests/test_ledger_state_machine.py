"""The ledger as a state machine: random sequences of money operations against real PostgreSQL.

A plain Python model predicts every outcome and balance; after each step the stored books must match
it, stay balanced and keep every user above its overdraft limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import asyncpg
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import ledger
from gateway.accounts import users
from tests.conftest import RESET_DATABASE
from tests.test_ledger_helpers import NOW, PRICE_MICRO

USERS = 3
OVERDRAFT_MICRO = {0: 0, 1: 0, 2: 2 * PRICE_MICRO}  # user index -> overdraft limit
SUMS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None)

amounts = st.integers(min_value=1, max_value=4 * PRICE_MICRO)
user_indexes = st.integers(min_value=0, max_value=USERS - 1)
picks = st.integers(min_value=0, max_value=10**6)  # an index into a list, taken modulo its length


@dataclass
class Hold:
    id: int
    debit: int
    credit: int
    amount_micro: int
    expires_at: dt.datetime
    resolved: bool = False


@dataclass
class Request:
    """A call that succeeded, kept to be replayed: which function, its arguments, its transfer id."""
    function: str
    fields: dict
    transfer_id: int


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.connection: asyncpg.Connection = self.run(asyncpg.connect(database_url))
        self.now = NOW
        self.key_number = 0
        self.holds: list[Hold] = []
        self.requests: list[Request] = []
        self.run(self.connection.execute(RESET_DATABASE))
        self.revenue = self.run(ledger.system_id(self.connection, "revenue"))
        self.clearing = self.run(ledger.system_id(self.connection, "payment_clearing"))
        self.users = [self.run(self.create_user(index)) for index in range(USERS)]
        self.expected = {row["id"]: dict.fromkeys(SUMS, 0)
                         for row in self.run(self.connection.fetch("SELECT id FROM accounts"))}

    async def create_user(self, index: int) -> int:
        user_id = await users.ensure_client(self.connection, email=f"user{index}@example.com")
        await ledger.set_overdraft(self.connection, user_id, OVERDRAFT_MICRO[index])
        return await ledger.user_account(self.connection, user_id)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.connection.close())
        self.loop.close()

    # The model

    def next_key(self, prefix: str) -> str:
        self.key_number += 1
        return f"{prefix}-{self.key_number}"

    def available(self, account: int) -> int:
        sums = self.expected[account]
        return sums["credits_posted"] - sums["debits_posted"] - sums["debits_pending"]

    def may_spend(self, account: int, amount_micro: int) -> bool:
        if account not in self.users:
            return True
        return self.available(account) - amount_micro >= -OVERDRAFT_MICRO[self.users.index(account)]

    def call(self, function: str, **fields):
        """Call ledger.move or ledger.resolve; a LedgerError is returned, not raised."""
        try:
            return self.run(getattr(ledger, function)(self.connection, now=self.now, **fields))
        except ledger.LedgerError as error:
            return error

    def transfer(self, prefix: str, debit: int, credit: int, amount_micro: int, kind: str,
                 hold_ttl_s: int | None = None) -> None:
        fields = {"key": self.next_key(prefix), "debit": debit, "credit": credit,
                  "amount_micro": amount_micro, "kind": kind, "metadata": {"step": self.key_number}}
        if hold_ttl_s is not None:
            fields["hold_until"] = self.now + dt.timedelta(seconds=hold_ttl_s)
        outcome = self.call("move", **fields)
        if not self.may_spend(debit, amount_micro):
            assert isinstance(outcome, ledger.InsufficientBalance), outcome
            return
        assert isinstance(outcome, ledger.Transfer) and not outcome.replayed, outcome
        self.requests.append(Request("move", fields, outcome.id))
        side = "posted" if hold_ttl_s is None else "pending"
        self.expected[debit]["debits_" + side] += amount_micro
        self.expected[credit]["credits_" + side] += amount_micro
        if hold_ttl_s is not None:
            self.holds.append(Hold(outcome.id, debit, credit, amount_micro, fields["hold_until"]))

    def release(self, hold: Hold, posted_micro: int) -> None:
        hold.resolved = True
        self.expected[hold.debit]["debits_pending"] -= hold.amount_micro
        self.expected[hold.credit]["credits_pending"] -= hold.amount_micro
        self.expected[hold.debit]["debits_posted"] += posted_micro
        self.expected[hold.credit]["credits_posted"] += posted_micro

    # Rules

    @rule(user=user_indexes, amount_micro=amounts)
    def deposit(self, user, amount_micro):
        self.transfer("deposit", self.clearing, self.users[user], amount_micro, "deposit")

    @rule(user=user_indexes, amount_micro=amounts)
    def purchase(self, user, amount_micro):
        self.transfer("purchase", self.users[user], self.revenue, amount_micro, "purchase")

    @rule(user=user_indexes, amount_micro=amounts)
    def refund(self, user, amount_micro):
        self.transfer("refund", self.revenue, self.users[user], amount_micro, "refund")

    @rule(user=user_indexes, amount_micro=amounts, hold_ttl_s=st.integers(min_value=1, max_value=120))
    def hold(self, user, amount_micro, hold_ttl_s):
        self.transfer("hold", self.users[user], self.revenue, amount_micro, "usage", hold_ttl_s)

    @precondition(lambda self: self.holds)
    @rule(pick=picks, share=st.integers(min_value=0, max_value=11))
    def post(self, pick, share):
        """Post 0..10 tenths of the hold, or (share 11) one micro-credit more than held."""
        hold = self.holds[pick % len(self.holds)]
        posted_micro = hold.amount_micro + 1 if share == 11 else hold.amount_micro * share // 10
        fields = {"key": self.next_key("post"), "hold_id": hold.id, "post_micro": posted_micro}
        outcome = self.call("resolve", **fields)
        if hold.resolved:
            assert isinstance(outcome, ledger.HoldResolved), outcome
        elif posted_micro > hold.amount_micro:
            assert isinstance(outcome, ledger.InvalidAmount), outcome
        elif hold.expires_at <= self.now:
            assert isinstance(outcome, ledger.HoldExpired), outcome
        else:
            assert isinstance(outcome, ledger.Transfer) and outcome.amount_micro == posted_micro, outcome
            self.requests.append(Request("resolve", fields, outcome.id))
            self.release(hold, posted_micro)

    @precondition(lambda self: self.holds)
    @rule(pick=picks)
    def void(self, pick):
        hold = self.holds[pick % len(self.holds)]
        fields = {"key": self.next_key("void"), "hold_id": hold.id}
        outcome = self.call("resolve", **fields)
        if hold.resolved:
            assert isinstance(outcome, ledger.HoldResolved), outcome
        else:
            assert isinstance(outcome, ledger.Transfer) and outcome.phase == "void_pending", outcome
            self.requests.append(Request("resolve", fields, outcome.id))
            self.release(hold, 0)

    @rule(advance_s=st.integers(min_value=0, max_value=90))
    def expire(self, advance_s):
        self.now += dt.timedelta(seconds=advance_s)
        due = [hold for hold in self.holds if not hold.resolved and hold.expires_at <= self.now]
        assert self.run(ledger.expire_holds(self.connection, now=self.now)) == len(due)
        for hold in due:
            self.release(hold, 0)

    @precondition(lambda self: self.requests)
    @rule(pick=picks)
    def replay(self, pick):
        request = self.requests[pick % len(self.requests)]
        outcome = self.call(request.function, **request.fields)
        assert isinstance(outcome, ledger.Transfer), outcome
        assert (outcome.id, outcome.replayed) == (request.transfer_id, True)

    @precondition(lambda self: self.requests)
    @rule(pick=picks, change=st.sampled_from(["amount", "metadata"]))
    def replay_changed(self, pick, change):
        request = self.requests[pick % len(self.requests)]
        fields = dict(request.fields)
        if change == "metadata":
            fields["metadata"] = {"step": -1}
        elif request.function == "move":
            fields["amount_micro"] += 1
        else:  # a void becomes a post of nothing; a post posts one micro-credit less or more
            posted_micro = fields.get("post_micro")
            fields["post_micro"] = 0 if posted_micro is None else posted_micro ^ 1
        outcome = self.call(request.function, **fields)
        assert isinstance(outcome, ledger.IdempotencyConflict), outcome

    # Invariants, checked after every step

    @invariant()
    def stored_sums_match_the_model(self):
        rows = self.run(self.connection.fetch(f"SELECT id, {', '.join(SUMS)} FROM accounts"))
        assert {row["id"]: {name: row[name] for name in SUMS} for row in rows} == self.expected

    @invariant()
    def no_user_is_below_its_overdraft_limit(self):
        below = self.run(self.connection.fetchval(
            "SELECT count(*) FROM accounts WHERE kind = 'user'"
            " AND credits_posted - debits_posted - debits_pending < -overdraft_micro"))
        assert below == 0

    @invariant()
    def money_is_conserved(self):
        row = self.run(self.connection.fetchrow(
            "SELECT sum(credits_posted - debits_posted) AS posted,"
            " sum(credits_pending - debits_pending) AS pending FROM accounts"))
        assert (row["posted"], row["pending"]) == (0, 0)

    @invariant()
    def each_hold_is_resolved_at_most_once(self):
        most = self.run(self.connection.fetchval(
            "SELECT coalesce(max(resolutions), 0) FROM"
            " (SELECT count(*) AS resolutions FROM transfers WHERE pending_id IS NOT NULL"
            "  GROUP BY pending_id) AS counted"))
        assert most <= 1

    @invariant()
    def reconciliation_passes(self):
        report = self.run(ledger.reconcile(self.connection))
        assert report.ok, report.text()


def test_random_operation_sequences_keep_the_books_exact(servers, database):
    run_state_machine_as_test(lambda: LedgerMachine(servers.database_url), settings=SETTINGS)
