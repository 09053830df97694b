"""Forwarding a held AI call: the bytes the upstream gets (the authorised body, re-serialised), the
URL and headers (the operator's key in place of the client's), and the request itself, whose
failures are mapped by the one upstream-failure table."""

from __future__ import annotations

import time

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from gateway.ai import usage as usage_mod
from gateway.ai.resources import Services
from gateway.ai.routes import CallSpec
from gateway.core.call import Call
from gateway.core.failures import upstream_error

# Client headers an upstream may need; everything else (cookies, our keys) stays here.
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta", "user-agent")


def upstream_body(spec: CallSpec, body: dict | None) -> tuple[bytes, bool]:
    """The bytes to send, and whether to drop the usage-only chunk the client did not ask for.

    The upstream gets the parsed body serialised again, never the client's bytes: a key given twice
    (at any depth) reaches it once, with the value that was authorised and priced (M4, 0011)."""
    if body is None:
        return b"", False
    if spec.provider == "openai" and spec.stream and spec.kind in ("chat", "completions"):
        changed, asked = usage_mod.with_openai_stream_usage(body)
        return orjson.dumps(changed), not asked
    return orjson.dumps(body), False


def upstream_request(ai: Services, request: web.Request, spec: CallSpec) -> tuple[URL, dict[str, str]]:
    upstream = ai.upstreams[spec.provider]
    url = upstream.base_url + spec.upstream_path
    if spec.provider == "gemini" and spec.stream:
        url += "?alt=sse"
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    headers["content-type"] = "application/json"
    secret = upstream.next_key()
    if spec.provider == "openai":
        headers["authorization"] = f"Bearer {secret}"
    elif spec.provider == "anthropic":
        headers["x-api-key"] = secret
        headers.setdefault("anthropic-version", "2023-06-01")
    else:
        headers["x-goog-api-key"] = secret
    # encoded=True: the base is stored encoded and the path is one the route allowed; parsed,
    # yarl would resolve dot segments and decode escapes (C1).
    return URL(url, encoded=True), headers


async def send(ai: Services, request: web.Request, call: Call, payload: bytes) -> aiohttp.ClientResponse:
    """The upstream's response, its headers read; its body is the relay's to read."""
    spec = call.spec
    url, headers = upstream_request(ai, request, spec)
    method = "GET" if spec.kind == "free" and spec.provider == "openai" else "POST"
    started = time.perf_counter()
    try:
        # No redirects: a redirect to another host would carry our upstream key with it.
        upstream = await ai.session.request(method, url, headers=headers, allow_redirects=False,
                                            timeout=ai.upstreams[spec.provider].timeout,
                                            data=payload if method == "POST" else None)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise upstream_error(error, spec.provider) from error
    call.upstream_s = time.perf_counter() - started
    return upstream
