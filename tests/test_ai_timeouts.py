"""Each provider may have its own read timeout; the shorter one wins over the global default."""

from __future__ import annotations

import time

import anthropic
import pytest

from tests.test_ai_routes import CLAUDE, MESSAGES, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


async def test_a_provider_read_timeout_overrides_the_global_one(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database, ai_read_timeout_s=30.0,
                        anthropic_read_timeout_s=0.5)
    before = await stack.balance()
    await stack.control("faults", {"mode": "timeout", "count": 1, "delay_ms": 20_000})
    client = stack.anthropic()
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    await client.close()
    assert raised.value.status_code == 504 and time.monotonic() - started < 10
    assert await stack.balance() == before and await stack.open_holds() == 0
