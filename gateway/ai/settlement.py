"""Settlement: every held call ends with its hold resolved — posted at the real cost (never above
the hold) or voided — its usage row written in that same statement, its TPM reservation
corrected, and its outcome recorded once. A settlement that fails leaves the hold to the expiry
sweep: the user is not charged."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator

from gateway.ai import usage as usage_mod
from gateway.ai import usage_log
from gateway.ai.pricing import cost_micro
from gateway.ai.resources import Services
from gateway.ai.usage_log import UsageRow
from gateway.core import metrics
from gateway.core.call import Call
from gateway.core.errors import GatewayError
from gateway.core.failures import STORE_FAILURES
from gateway.core.outcomes import Outcome

log = logging.getLogger(__name__)
# A settlement that cannot reach PostgreSQL tries again after this, doubling up to the maximum.
SETTLE_RETRY_FIRST_S = 0.1
SETTLE_RETRY_MAX_S = 2.0


@contextlib.asynccontextmanager
async def settled(ai: Services, call: Call) -> AsyncIterator[None]:
    """Whatever happens inside — an answer, a refusal, an upstream failure, a client that leaves, a
    cancellation — the call leaves settled, shielded from the handler's cancellation."""
    try:
        yield
    except GatewayError as error:
        call.charge = False  # refused or failed before the upstream produced anything billable
        call.fail(error.outcome)
        raise
    except BaseException:
        call.fail(Outcome.ERROR)
        raise
    finally:
        if not call.settled:  # a stream settles itself before its last events: no second shielded task
            await asyncio.shield(settle_logged(ai, call))


async def settle_logged(ai: Services, call: Call) -> None:
    try:
        await settle(ai, call)
    except STORE_FAILURES as error:  # unreachable for longer than ai_settle_retry_s
        log.error("settling AI call %s failed (%s); its hold will be voided at expiry", call.call_id,
                  type(error).__name__)
    except Exception:  # the settlement boundary: logged, and the hold is the expiry sweep's
        log.exception("settling AI call %s failed; its hold will be voided at expiry", call.call_id)


async def resolve_patiently(ai: Services, call: Call, row: UsageRow, cost: int, charged: int) -> None:
    """Resolve the hold with its usage row, retrying while PostgreSQL is unreachable (or rolled the
    statement back whole: a deadlock, a serialization failure) — never on any other error.

    The answer has been delivered (a stream) or is about to be: giving up at once would leave the
    hold to expire uncharged, a call given away, each time the database restarts under load (the
    chaos run, decision 0026). The key makes a retry after a lost commit a replay.
    """
    assert call.hold is not None
    deadline_s = time.monotonic() + ai.settings.ai_settle_retry_s
    delay_s = SETTLE_RETRY_FIRST_S
    while True:
        try:
            # One item of the worker's next ledger batch, the usage row written in its transaction
            # (decision 0021).
            await ai.ledger.resolve(key=f"ai:{call.call_id}:settle", hold_id=call.hold.id, now=row.created_at,
                                    post_micro=charged if charged else None, expiring=True,
                                    metadata={"cost_micro": cost, "usage_source": row.usage_source},
                                    usage=usage_log.columns(row), user_id=call.principal.user_id)
            return
        except STORE_FAILURES as error:
            if time.monotonic() + delay_s > deadline_s:
                raise
            log.warning("settling AI call %s: PostgreSQL unavailable (%s), retrying", call.call_id,
                        type(error).__name__)
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, SETTLE_RETRY_MAX_S)


async def settle(ai: Services, call: Call) -> int:
    """Post the real cost (at most the hold) or void the hold, with the call's usage row in the same
    statement; correct the TPM reservation. Returns the charge. Runs once per call."""
    if call.settled:
        return 0
    call.settled = True
    cost = charged = 0
    usage = call.usage if call.charge else None
    if usage is not None and call.price is not None:
        cost = cost_micro(usage, call.price.price)
    if call.hold is not None:
        charged = min(cost, call.hold.amount_micro)
        if cost > charged:
            metrics.AI_UNDERCHARGED.inc(cost - charged)
            log.warning("call %s cost %d above its hold %d", call.call_id, cost, call.hold.amount_micro)
    if call.tpm_window is not None:
        await ai.keys.correct_tokens(call.tpm_window, (usage.total if usage else 0) - call.tpm_reserved)
    row = usage_row(ai, call, usage, cost, charged)
    if call.hold is None:
        ai.usage.add(row)  # nothing charged: the row goes with the next batch
        return 0
    await resolve_patiently(ai, call, row, cost, charged)
    ai.usage.observe(row)
    call.charged_micro = charged
    return charged


def usage_row(ai: Services, call: Call, usage: usage_mod.Usage | None, cost: int, charged: int) -> UsageRow:
    usage = usage or usage_mod.Usage(0, 0, 0)
    spec = call.spec
    return UsageRow(
        call.request_id, call.principal.key_id, call.principal.user_id, spec.provider, spec.model or "-",
        usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, cost, charged,
        call.hold.id if call.hold else None, str(call.outcome), spec.stream,
        call.usage_source if call.charge else "none", int((time.perf_counter() - call.started_s) * 1000),
        int(call.upstream_s * 1000), dt.datetime.fromtimestamp(ai.clock.now_s(), dt.timezone.utc))
