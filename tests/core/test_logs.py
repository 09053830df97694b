"""Log lines of a served gateway: JSON objects, every line written for a request carrying its id,
no secret anywhere."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from devkit.embedded import free_port
from gateway.core.logs import JsonFormatter, RequestIdFilter, TextFormatter, redact
from tests.support import ai
from tests.support.gateways import JWT_SECRET
from tests.support.processes import ai_env, gateway_env, serve, stop, wait_until_up

DATABASE_PASSWORD = "database-password-never-logged"
CHAT = {"model": ai.GPT, "messages": ai.MESSAGES, "max_tokens": 20}


def with_password(url: str) -> str:
    # The test cluster trusts every local connection, so any password works (and none is checked).
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{DATABASE_PASSWORD}@", 1)


async def send(session, method: str, url: str, request_id: str, **kwargs) -> int:
    async with session.request(method, url, headers={"X-Request-Id": request_id, **kwargs.pop("headers", {})},
                               **kwargs) as response:
        await response.read()
        assert response.headers["X-Request-Id"] == request_id
        return response.status


async def test_served_log_lines_are_json_and_carry_the_request_id(servers, gateway_factory, mock_target, database,
                                                                  tmp_path):
    stack = await ai.start(gateway_factory, mock_target, database)
    port = free_port()
    env = gateway_env(servers, TOLLGATE_PORT=str(port), TOLLGATE_ACCESS_LOG="all",
                      TOLLGATE_DATABASE_URL=with_password(servers.database_url), **ai_env(mock_target))
    log_path = tmp_path / "serve.log"
    process = await serve(env, log_path)
    base = f"http://127.0.0.1:{port}"
    key = {"Authorization": f"Bearer {stack.key}"}
    try:
        await wait_until_up(base + "/health", process)
        async with aiohttp.ClientSession() as session:
            assert await send(session, "POST", base + "/openai/v1/chat/completions", "request-ok-0001",
                              json=CHAT, headers=key) == 200
            await stack.control("keys", {"keys": ["sk-someone-else"]})  # the upstream refuses our key
            assert await send(session, "POST", base + "/openai/v1/chat/completions", "request-refused-01",
                              json=CHAT, headers=key) == 502
            await stack.control("keys", {"keys": None})
            gemini = f"{base}/gemini/v1beta/models/{ai.GEMINI}:generateContent?key={stack.key}"
            assert await send(session, "POST", gemini, "request-gemini-01",
                              json={"contents": [{"parts": [{"text": "hi"}]}]}) == 200
            assert await send(session, "GET", base + "/api/v1/proxy/x", "request-no-token-1") == 401
    finally:
        await stop(process)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    by_request: dict[str, list[dict]] = {}
    for line in lines:
        by_request.setdefault(line.get("request_id", ""), []).append(line)
    for request_id, status in (("request-ok-0001", 200), ("request-refused-01", 502), ("request-gemini-01", 200),
                               ("request-no-token-1", 401)):
        access = [line for line in by_request[request_id] if line["logger"] == "tollgate.access"]
        assert [line["status"] for line in access] == [status]
    # A line the request caused deep in the AI wing carries the id too.
    assert any("refused our credential" in line["message"] for line in by_request["request-refused-01"])
    assert not any("refused our credential" in line["message"] for line in by_request.get("", []))
    for secret in (DATABASE_PASSWORD, JWT_SECRET, stack.key, "sk-mock-a", "mock-gemini"):
        assert secret not in text


@pytest.mark.parametrize("text, shown", [
    ("connect to postgresql://app:hunter2@db:5432/x failed", "connect to postgresql://app:***@db:5432/x failed"),
    ("redis://:hunter2@cache:6379/0 down", "redis://:***@cache:6379/0 down"),
    ("postgresql://app@db/x and http://host:8080/path", "postgresql://app@db/x and http://host:8080/path"),
])
def test_url_passwords_are_masked(text, shown):
    assert redact(text) == shown


def test_the_text_format_names_the_request_and_masks_passwords():
    record = logging.LogRecord("tollgate.x", logging.WARNING, __file__, 1, "lost redis://:pw@r:1", None, None)
    record.request_id = "abc12345"
    assert TextFormatter().format(record).endswith("tollgate.x lost redis://:***@r:1 request_id=abc12345")
    assert RequestIdFilter().filter(record) and json.loads(JsonFormatter().format(record))["request_id"] == "abc12345"
