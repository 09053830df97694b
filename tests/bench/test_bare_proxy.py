"""The bench's reference proxy (bench/bare_proxy.py): a passthrough that relays what it is sent."""

from __future__ import annotations

import hashlib

from bench.bare_proxy import make_app


async def test_the_bare_proxy_relays_requests_and_answers(aiohttp_client, mock_target):
    client = await aiohttp_client(make_app(mock_target))
    answer = await client.get("/health")
    assert answer.status == 200
    echoed = await client.post("/echo/bench?x=1", data=b"body bytes", headers={"X-Custom": "kept"})
    assert echoed.status == 200
    seen = await echoed.json()
    assert seen["method"] == "POST" and seen["path"] == "/echo/bench" and seen["query"] == "x=1"
    assert seen["body_sha256"] == hashlib.sha256(b"body bytes").hexdigest()
    assert seen["headers"]["X-Custom"] == "kept"
