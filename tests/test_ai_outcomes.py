"""One outcome word per AI call (issue 8): the request metric and the AI metric agree, because the
AI stages record their outcome on the request's one Call."""

from __future__ import annotations

import asyncio

import orjson

from gateway.core import metrics
from tests.ai_fakes import read_then_leave
from tests.test_ai_routes import GPT, start

CHAT = "/openai/v1/chat/completions"


def requests_counted(status: str, outcome: str) -> float:
    return metrics.REQUESTS.labels("ai_openai", "POST", status, outcome)._value.get()


def ai_calls_counted(outcome: str, source: str) -> float:
    return metrics.AI_CALLS.labels("openai", outcome, source)._value.get()


async def test_a_relayed_upstream_500_is_upstream_error_in_both_metrics(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    await stack.control("faults", {"mode": "500", "count": 1})
    before = requests_counted("500", "upstream_error"), ai_calls_counted("upstream_error", "none")
    response = await stack.gateway.post(CHAT, headers={"Authorization": f"Bearer {stack.key}"},
                                        json={"model": GPT, "max_tokens": 5, "messages": [{"role": "user",
                                                                                            "content": "hi"}]})
    assert response.status == 500
    after = requests_counted("500", "upstream_error"), ai_calls_counted("upstream_error", "none")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


async def test_a_client_leaving_mid_stream_is_client_disconnected_in_both_metrics(gateway_factory, mock_target,
                                                                                  database):
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    await stack.control("latency", {"ms": 0, "chunk_ms": 100})
    before = requests_counted("200", "client_disconnected"), ai_calls_counted("client_disconnected", "upstream")
    body = orjson.dumps({"model": GPT, "max_tokens": 20, "stream": True,
                         "messages": [{"role": "user", "content": "tell me a story"}]})
    got = await read_then_leave(stack.gateway.server.port, CHAT, {"Authorization": f"Bearer {stack.key}",
                                                                  "Content-Type": "application/json"}, body,
                                lambda seen: b'"content":"' in seen)
    assert got.startswith(b"HTTP/1.1 200")
    for _ in range(200):
        after = requests_counted("200", "client_disconnected"), ai_calls_counted("client_disconnected", "upstream")
        if after != before and await stack.open_holds() == 0:
            break
        await asyncio.sleep(0.05)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
