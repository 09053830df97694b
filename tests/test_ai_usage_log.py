"""Every resolved AI hold has its usage row at once, written by the statement that resolved it (L6):
a worker killed before its next batch flush loses no row of a charged call."""

from __future__ import annotations

import openai
import pytest

from gateway.ai.resources import AI
from tests.test_ai_routes import GPT, MESSAGES, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

UNLOGGED_CHARGES = """
SELECT count(*) FROM transfers r
WHERE r.kind = 'usage' AND r.phase IN ('post_pending', 'void_pending')
  AND NOT EXISTS (SELECT 1 FROM ai_usage u WHERE u.hold_transfer_id = r.pending_id)"""


async def test_a_charge_has_its_usage_row_though_the_batch_is_never_flushed(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database, usage_flush_interval_s=3600)
    await stack.control("faults", {"mode": "500", "count": 1})
    client = stack.openai()
    with pytest.raises(openai.InternalServerError):  # a voided hold
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3, stream=True)
    [chunk async for chunk in stream]
    await client.close()
    stack.gateway.server.app[AI].usage.pending.clear()  # what a kill -9 does to the batch
    assert len(await stack.charges()) == 2
    assert await database.fetchval(UNLOGGED_CHARGES) == 0
    rows = await database.fetch("SELECT outcome, stream, charged_micro FROM ai_usage ORDER BY id")
    charges = await stack.charges()
    assert [tuple(row) for row in rows] == [("upstream_error", False, 0), ("ok", False, charges[0]),
                                            ("ok", True, charges[1])]
