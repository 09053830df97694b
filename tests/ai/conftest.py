"""Fixtures of the AI tests: the gateway in front of the mock AI upstream, or of one that records every request."""

from __future__ import annotations

import pytest

from tests.support.ai import Stack, start
from tests.support.ai_fakes import recording_upstream


@pytest.fixture
async def stack(gateway_factory, mock_target, database) -> Stack:
    return await start(gateway_factory, mock_target, database)


@pytest.fixture
async def recorded(gateway_factory, mock_target, database, aiohttp_raw_server):
    upstream, base = await recording_upstream(aiohttp_raw_server)
    stack = await start(gateway_factory, mock_target, database, credits=1_000_000,
                        openai_base_url=f"{base}/openai/v1",
                        anthropic_base_url=f"{base}/anthropic", gemini_base_url=f"{base}/gemini")
    return stack, upstream


@pytest.fixture
async def paths(gateway_factory, mock_target, database, aiohttp_raw_server):
    upstream, base = await recording_upstream(aiohttp_raw_server)
    stack = await start(gateway_factory, mock_target, database, openai_base_url=f"{base}/openai/v1",
                        anthropic_base_url=f"{base}/anthropic", gemini_base_url=f"{base}/gemini")
    return stack, upstream
