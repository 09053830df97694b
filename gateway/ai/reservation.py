"""Reservation: before any byte goes upstream, a billed call holds the most it can cost — its
tokens against the key's tokens-per-minute window, then its credits on the user's account, within
the key's and the user's budgets. No hold, no forward; parallel calls can never spend more than the
balance, nor more than a budget."""

from __future__ import annotations

import datetime as dt

import ledger
from gateway.ai import authentication
from gateway.ai.pricing import max_cost_micro
from gateway.ai.resources import Services
from gateway.ai.routes import input_bound
from gateway.core.call import Call
from gateway.core.errors import BudgetExceeded, PaymentRequired


async def reserve(ai: Services, call: Call, raw_body: bytes, body: dict | None, canonical: bytes) -> None:
    """Hold the most this call can use; the bounds held stay on the call for settlement."""
    price, spec = call.price, call.spec
    assert price is not None and spec is not None, "only billed calls are reserved"
    output_bound = spec.output_bound
    if output_bound is None:
        output_bound = price.max_output_tokens * spec.choices
    call.input_tokens_bound = input_bound(raw_body, body, canonical)
    call.output_tokens_bound = output_bound
    if call.principal.tpm_limit:
        await _reserve_tokens(ai, call)
    amount = max(1, max_cost_micro(price.price, call.input_tokens_bound, output_bound))
    now = dt.datetime.fromtimestamp(ai.clock.now_s(), dt.timezone.utc)
    # The user's revenue shard, so the batches of the batcher's lanes lock no row in common (decision
    # 0021, "Lanes"); the ids are cached per process after the first call.
    revenue = await ledger.system_id(ai.pool, ledger.revenue_shard(call.principal.user_id))
    # One item of the worker's next ledger batch (decision 0021): ledger_batch locks, checks the balance
    # and the budgets, and writes, as ledger_move_within_budgets did for one call (decisions 0012,
    # 0019). The account id comes with the cached key record (issue 8).
    account = call.principal.account_id or await ledger.user_account(ai.pool, call.principal.user_id)
    try:
        call.hold = await ai.ledger.move(
            key=f"ai:{call.call_id}:hold", debit=account, credit=revenue, amount_micro=amount,
            kind="usage", now=now, user_id=call.principal.user_id, description=f"{spec.provider} {spec.model}",
            hold_until=now + dt.timedelta(seconds=ai.settings.ai_hold_ttl_s),
            metadata={"call": call.call_id, "key_id": call.principal.key_id, "model": spec.model},
            budgeted=True, api_key_id=call.principal.key_id)
    except ledger.LimitExceeded as error:
        raise _budget_refusal(error.detail, amount) from error
    except ledger.InsufficientBalance as error:
        raise PaymentRequired(
            f"insufficient balance: this call may cost up to {ledger.format_micro(amount)} credits",
            code="insufficient_balance") from error


def _budget_refusal(detail: str, amount_micro: int) -> BudgetExceeded:
    """The refusal of a budget named by ledger_move_within_budgets' detail: 'key|user:period:limit'."""
    scope, period, limit = detail.split(":")
    return BudgetExceeded(f"budget exceeded: this call may cost up to {ledger.format_micro(amount_micro)} credits, "
                          f"more than is left of the {scope}'s {period} budget of "
                          f"{ledger.format_micro(int(limit))} credits")


async def _reserve_tokens(ai: Services, call: Call) -> None:
    """Count the call's token bound in the key's TPM window now, so calls running at once see each
    other (L8); settlement corrects it to the real tokens."""
    tokens = call.input_tokens_bound + call.output_tokens_bound
    window = await ai.keys.reserve_tokens(call.principal, tokens)
    if isinstance(window, authentication.Refusal):
        authentication.refuse(window)
    if window is not None:  # None: Redis is away and the limits pause (decision 0011)
        call.tpm_window, call.tpm_reserved = window, tokens
