"""Usage rows and the AI metrics of each call."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.ai import GPT, MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_usage_rows_and_metrics_record_each_call(stack):
    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=4)
    await client.close()
    row = None
    for _ in range(100):
        row = await stack.database.fetchrow("SELECT * FROM ai_usage")
        if row:
            break
        await asyncio.sleep(0.05)
    assert row is not None
    assert (row["provider"], row["model"], row["output_tokens"], row["outcome"], row["stream"]) == \
        ("openai", GPT, 4, "ok", False)
    assert row["charged_micro"] == row["cost_micro"] == (await stack.charges())[-1]
    text = await (await stack.gateway.get("/metrics")).text()
    assert f'tollgate_ai_tokens_total{{kind="output",model="{GPT}",provider="openai"}}' in text
    assert "tollgate_ai_credits_charged_micro_total" in text
