"""An AI route forwards only the exact path it matched (attack C1): dot segments, encoded slashes or
dots and backslashes are refused in the provider's shape, and the upstream sees nothing of them.

Every request goes out on a raw socket, so no client normalises the path before the gateway sees it;
the upstream is a low-level aiohttp server that records every request line whatever its path.
"""

from __future__ import annotations

import orjson
import pytest

from tests.ai_fakes import raw_request, recording_upstream
from tests.test_ai_routes import GEMINI, GPT, start

CLAUDE = "claude-haiku-4-5"
CHAT = orjson.dumps({"model": GPT, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
CLAUDE_BODY = orjson.dumps({"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
GEMINI_BODY = orjson.dumps({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 5}})


@pytest.fixture
async def paths(gateway_factory, mock_target, database, aiohttp_raw_server):
    upstream, base = await recording_upstream(aiohttp_raw_server)
    stack = await start(gateway_factory, mock_target, database, openai_base_url=f"{base}/openai/v1",
                        anthropic_base_url=f"{base}/anthropic", gemini_base_url=f"{base}/gemini")
    return stack, upstream


async def send(stack, method: str, target: str, body: bytes = b""):
    headers = {"Authorization": f"Bearer {stack.key}", "x-goog-api-key": stack.key}
    if body:
        headers["Content-Type"] = "application/json"
    return await raw_request(stack.gateway.server.port, method, target, headers, body)


# (method, what the client sends, body, the one path the upstream must see)
ALLOWED = [
    ("GET", "/openai/v1/models", b"", "/openai/v1/models"),
    ("GET", "/openai/v1/models?limit=5", b"", "/openai/v1/models"),
    ("GET", f"/openai/v1/models/{GPT}", b"", f"/openai/v1/models/{GPT}"),
    ("GET", "/openai/v1/models/ft:gpt-4o-mini:acme::abc123", b"", "/openai/v1/models/ft:gpt-4o-mini:acme::abc123"),
    ("GET", "/openai/v1/models/ft%3Agpt-4o-mini%3Aacme", b"", "/openai/v1/models/ft:gpt-4o-mini:acme"),
    ("POST", "/openai/v1/chat/completions", CHAT, "/openai/v1/chat/completions"),
    ("POST", "/anthropic/v1/messages", CLAUDE_BODY, "/anthropic/v1/messages"),
    ("POST", "/anthropic/v1/messages/count_tokens", CLAUDE_BODY, "/anthropic/v1/messages/count_tokens"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}:generateContent", GEMINI_BODY,
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}%3AgenerateContent", GEMINI_BODY,
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", f"/gemini/v1/models/{GEMINI}:streamGenerateContent?alt=sse", GEMINI_BODY,
     f"/gemini/v1/models/{GEMINI}:streamGenerateContent?alt=sse"),
    ("POST", f"/gemini/v1beta/models/{GEMINI}:countTokens", GEMINI_BODY, f"/gemini/v1beta/models/{GEMINI}:countTokens"),
    ("POST", "/api/v1/generate", orjson.dumps({"model": GEMINI, "contents": [{"parts": [{"text": "hi"}]}]}),
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
    ("POST", "/api/v1/generate", orjson.dumps({"model": f"models/{GEMINI}", "contents": [{"parts": [{"text": "hi"}]}]}),
     f"/gemini/v1beta/models/{GEMINI}:generateContent"),
]


@pytest.mark.parametrize("method, target, body, upstream_path", ALLOWED, ids=[f"{r[0]} {r[1]}" for r in ALLOWED])
async def test_a_valid_path_reaches_the_upstream_exactly(paths, method, target, body, upstream_path):
    stack, upstream = paths
    answer = await send(stack, method, target, body)
    assert answer.status == 200, answer.body
    assert [(seen.method, seen.raw_path) for seen in upstream.seen] == [(method, upstream_path)]


TRAVERSALS = ["..%2Ffiles", "%2e%2e/files", "%2E%2E%2Ffiles", "../files", "..%2F..%2F..%2F_mock/ai/requests",
              "%2e%2e/%2e%2e/%2e%2e/_mock/ai/requests", "../../../_mock/ai/requests", "..\\files", "%5c..%5cfiles",
              ".%2e/files", "%2e./files", "./gpt-4o-mini", "gpt-4o-mini/..", "gpt-4o-mini/%2e%2e", "..",
              "%252e%252e%252ffiles", "gpt-4o-mini%2F..%2F..%2Ffiles", "%2e", "."]
# (provider, method, target, body, status): each must be refused and nothing may reach the upstream.
REFUSED = [
    *[("openai", "GET", f"/openai/v1/models/{tail}", b"", 400) for tail in TRAVERSALS],
    ("openai", "GET", "/openai/v1/models%2Fgpt-4o-mini", b"", 400),
    ("openai", "GET", "/openai/v1/./models", b"", 400),
    ("openai", "GET", "/openai/v1/files", b"", 404),
    ("openai", "GET", "/openai/v1/models/gpt-4o-mini/versions", b"", 404),
    ("openai", "GET", "/openai/v1/models/%00", b"", 404),
    ("openai", "GET", "/openai/v1/%0A", b"", 404),  # found by the fuzz: fell to the JSON API's 404
    ("anthropic", "GET", "/anthropic/v1/%0A", b"", 404),
    ("openai", "POST", "/openai/v1/chat/completions/../../files", CHAT, 400),
    ("openai", "POST", "/openai/v1/chat%2Fcompletions", CHAT, 400),
    ("openai", "POST", "/openai/v1/chat/completions/%2e%2e", CHAT, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/../../v1/files", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/%2e%2e/batches", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1%2Fmessages", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/./messages", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1/messages/count_tokens/..", CLAUDE_BODY, 400),
    ("anthropic", "POST", "/anthropic/v1\\messages", CLAUDE_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta/models/{GEMINI}:generateContent/../../files", GEMINI_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta/files/../models/{GEMINI}:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", f"/gemini/v1beta%2Fmodels%2F{GEMINI}:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", "/gemini/v1beta/models/%2e%2e:generateContent", GEMINI_BODY, 400),
    ("gemini", "POST", "/gemini/v1beta/models/..:generateContent", GEMINI_BODY, 404),
    ("gemini", "POST", "/gemini/v1beta/models/.hidden:generateContent", GEMINI_BODY, 404),
    ("gemini", "POST", f"/gemini/v1beta/models/..%2F..%2F{GEMINI}:generateContent", GEMINI_BODY, 400),
]


def provider_shaped(provider: str, answer) -> bool:
    body = answer.json()
    if provider == "anthropic":
        return body["type"] == "error" and body["error"]["type"] in ("invalid_request_error", "not_found_error")
    if provider == "gemini":
        return body["error"]["code"] == answer.status and body["error"]["status"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    return body["error"]["type"] == "invalid_request_error" and isinstance(body["error"]["code"], str)


@pytest.mark.parametrize("provider, method, target, body, status", REFUSED, ids=[f"{r[1]} {r[2]}" for r in REFUSED])
async def test_a_path_that_could_leave_the_route_is_refused_and_never_forwarded(paths, provider, method, target,
                                                                               body, status):
    stack, upstream = paths
    answer = await send(stack, method, target, body)
    assert (answer.status, upstream.seen) == (status, []), answer.body
    assert provider_shaped(provider, answer), answer.body


@pytest.mark.parametrize("model", ["models/../gemini-2.0-flash", "../../files", f"{GEMINI}/../../x",
                                   "gemini-%2e%2e", "gemini-2.0-flash:streamGenerateContent"])
async def test_generate_refuses_a_model_name_that_is_not_one_path_segment(paths, model):
    stack, upstream = paths
    body = orjson.dumps({"model": model, "contents": [{"parts": [{"text": "hi"}]}]})
    answer = await send(stack, "POST", "/api/v1/generate", body)
    assert answer.status in (400, 404) and answer.json()["error"] is True
    assert upstream.seen == []
