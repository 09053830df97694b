"""The provider HTTP call and message fields: a provider's failure becomes the gateway's 502/504,
a malformed message a 400, never a 500."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from devkit.embedded import free_port
from gateway.core.errors import UpstreamTimeout, UpstreamUnreachable
from gateway.payments.providers import ANSWER_MAX_BYTES, CallbackRejected, ProviderFailed, call_json, int_field, \
    text_field


@pytest.fixture
async def provider(aiohttp_server):
    async def answer(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "slow":
            await asyncio.sleep(2)
        if kind == "huge":
            return web.Response(body=b"[" + b"0," * ANSWER_MAX_BYTES + b"0]", content_type="application/json")
        if kind == "html":
            return web.Response(text="<html>oops</html>", status=500)
        if kind == "refused":
            return web.json_response({"error": "no"}, status=402)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{kind}", answer)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        yield session, str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("kind, error", [("huge", ProviderFailed), ("html", ProviderFailed),
                                         ("refused", ProviderFailed), ("slow", UpstreamTimeout)])
async def test_a_provider_failure_is_the_gateways_own_error(provider, kind, error):
    session, base = provider
    with pytest.raises(error):
        await call_json(session, "stripe", "GET", f"{base}/{kind}", headers={}, timeout_s=0.5)


async def test_an_unreachable_provider_is_unreachable(provider):
    session, _ = provider
    with pytest.raises(UpstreamUnreachable):
        await call_json(session, "stripe", "GET", f"http://127.0.0.1:{free_port()}/x", headers={}, timeout_s=1)


async def test_a_good_answer_is_its_json(provider):
    session, base = provider
    assert await call_json(session, "stripe", "POST", f"{base}/ok", headers={}, timeout_s=1) == {"ok": True}


@pytest.mark.parametrize("message", [None, [], {"id": 5}, {"id": ""}, {"id": "a\x00"}, {"id": "x" * 201},
                                     {"n": True}, {"n": -1}, {"n": 2**63}])
def test_a_malformed_field_is_refused(message):
    with pytest.raises(CallbackRejected):
        text_field(message, "id", "test") if message is None or "n" not in message else int_field(message, "n", "t")
