"""The controls under /_mock/ai: faults, latency, accepted keys, the request log and a reset, for tests."""

from __future__ import annotations

from aiohttp import web

from devkit.mock_ai.faults import FAULT_MODES, TIMEOUT_FAULT_MS_DEFAULT
from devkit.mock_ai.models import PROVIDERS
from devkit.mock_ai.state import AI_STATE_KEY, KEY_PREFIXES_DEFAULT, Fault

FAULT_COUNT_MAX = 10_000
LATENCY_MS_MAX = 60_000
RETRY_AFTER_S_DEFAULT = 1


async def control_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object\n")
    return body


def bounded_integer(body: dict, name: str, *, default: int | None, maximum: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise web.HTTPBadRequest(text=f"{name} must be an integer from 0 to {maximum}\n")
    return value


def fault_json(fault: Fault | None) -> dict:
    if fault is None:
        return {"mode": "none", "count": 0, "provider": None}
    return {"mode": fault.mode, "count": fault.remaining, "provider": fault.provider, "delay_ms": fault.delay_ms,
            "retry_after_s": fault.retry_after_s}


async def set_fault(request: web.Request) -> web.Response:
    """POST {"mode", "count": 1, "provider": null, "delay_ms": null, "retry_after_s": 1}."""
    body = await control_body(request)
    mode, provider = body.get("mode"), body.get("provider")
    if mode not in FAULT_MODES:
        raise web.HTTPBadRequest(text=f"mode must be one of {', '.join(FAULT_MODES)}\n")
    if provider is not None and provider not in PROVIDERS:
        raise web.HTTPBadRequest(text=f"provider must be one of {', '.join(PROVIDERS)} or null\n")
    count = bounded_integer(body, "count", default=1, maximum=FAULT_COUNT_MAX)
    delay_ms = bounded_integer(body, "delay_ms", default=None, maximum=TIMEOUT_FAULT_MS_DEFAULT)
    retry_after_s = bounded_integer(body, "retry_after_s", default=RETRY_AFTER_S_DEFAULT, maximum=86_400)
    state = request.app[AI_STATE_KEY]
    state.fault = None if mode == "none" or not count else Fault(mode, count, provider, delay_ms, retry_after_s)
    return web.json_response(fault_json(state.fault))


async def get_fault(request: web.Request) -> web.Response:
    return web.json_response(fault_json(request.app[AI_STATE_KEY].fault))


async def set_latency(request: web.Request) -> web.Response:
    """POST {"ms": N, "chunk_ms": M}: N before every answer, M between stream frames (each optional)."""
    body = await control_body(request)
    state = request.app[AI_STATE_KEY]
    state.latency_ms = bounded_integer(body, "ms", default=state.latency_ms, maximum=LATENCY_MS_MAX)
    state.chunk_delay_ms = bounded_integer(body, "chunk_ms", default=state.chunk_delay_ms, maximum=LATENCY_MS_MAX)
    return web.json_response({"ms": state.latency_ms, "chunk_ms": state.chunk_delay_ms})


async def set_keys(request: web.Request) -> web.Response:
    """POST {"keys": [...]} accepts exactly those upstream keys; {"keys": null} restores the prefixes."""
    keys = (await control_body(request)).get("keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise web.HTTPBadRequest(text="keys must be a list of strings or null\n")
    request.app[AI_STATE_KEY].accepted_keys = None if keys is None else frozenset(keys)
    return web.json_response({"keys": keys, "prefixes": list(KEY_PREFIXES_DEFAULT) if keys is None else None})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[AI_STATE_KEY].requests))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[AI_STATE_KEY].requests.clear()
    return web.Response(status=204)


async def reset_state(request: web.Request) -> web.Response:
    request.app[AI_STATE_KEY].reset()
    return web.Response(status=204)


def add_control_routes(app: web.Application) -> None:
    app.router.add_post("/_mock/ai/faults", set_fault)
    app.router.add_get("/_mock/ai/faults", get_fault)
    app.router.add_post("/_mock/ai/latency", set_latency)
    app.router.add_post("/_mock/ai/keys", set_keys)
    app.router.add_get("/_mock/ai/requests", list_requests)
    app.router.add_delete("/_mock/ai/requests", clear_requests)
    app.router.add_post("/_mock/ai/reset", reset_state)
