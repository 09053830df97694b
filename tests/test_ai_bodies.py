"""What an AI request body may carry: duplicate keys (M4), file and media references (M5), a corrupt
Content-Encoding (M6), and odd credential headers. Each answer is checked against real servers."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from gateway.ai.routes import MEDIA_TOKENS_MAX
from tests.ai_fakes import raw_request, recording_upstream
from tests.test_ai_routes import CLAUDE, GEMINI, GPT, PRICE_MICRO, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"duplicate keys {names}"
    return dict(pairs)


def as_received(body: bytes) -> dict:
    """The body the upstream got, parsed so that any duplicate key anywhere fails the test."""
    return json.loads(body, object_pairs_hook=no_duplicates)


async def post(stack, path: str, body: bytes, key: str | None = None, headers: dict | None = None):
    return await raw_request(stack.gateway.server.port, "POST", path, {
        "Authorization": f"Bearer {key or stack.key}", "x-goog-api-key": key or stack.key,
        "Content-Type": "application/json", **(headers or {})}, body)


@pytest.fixture
async def recorded(gateway_factory, mock_target, database, aiohttp_raw_server):
    upstream, base = await recording_upstream(aiohttp_raw_server)
    stack = await start(gateway_factory, mock_target, database, credits=1_000_000,
                        openai_base_url=f"{base}/openai/v1",
                        anthropic_base_url=f"{base}/anthropic", gemini_base_url=f"{base}/gemini")
    return stack, upstream


# -- M4: duplicate keys ------------------------------------------------------------------------


DUPLICATES = [
    ("/openai/v1/chat/completions", GPT,
     b'{"model":"gpt-4o","max_tokens":100000,"messages":[{"role":"user","content":"Hi"}],'
     b'"model":"gpt-4o-mini","max_tokens":10}',
     {"model": GPT, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/anthropic/v1/messages", CLAUDE,
     b'{"model":"claude-sonnet-4-5","max_tokens":64000,"messages":[{"role":"user","content":"Hi",'
     b'"content":"Hello"}],"model":"claude-haiku-4-5","max_tokens":5}',
     {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "Hello"}]}),
    (f"/gemini/v1beta/models/{GEMINI}:generateContent", None,
     b'{"contents":[{"parts":[{"text":"Hi"}]}],"generationConfig":{"maxOutputTokens":100000,'
     b'"thinkingConfig":{"thinkingBudget":24000,"thinkingBudget":0},"maxOutputTokens":5}}',
     {"contents": [{"parts": [{"text": "Hi"}]}],
      "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"thinkingBudget": 0}}}),
]


@pytest.mark.parametrize("path, allowed, body, forwarded", DUPLICATES, ids=[d[0] for d in DUPLICATES])
async def test_the_upstream_receives_exactly_the_body_that_was_authorised_and_held(recorded, path, allowed, body,
                                                                                 forwarded):
    stack, upstream = recorded
    key = await stack.new_key(allowed_models=[allowed]) if allowed else stack.key
    answer = await post(stack, path, body, key)
    assert answer.status == 200, answer.body
    assert [as_received(seen.body) for seen in upstream.seen] == [forwarded]


# -- M5: media and file references -------------------------------------------------------------


def hold_for(input_tokens: int, output_tokens: int) -> int:
    p_in, p_out, _ = PRICE_MICRO
    return max(1, math.ceil((input_tokens * p_in + output_tokens * p_out) / 1_000_000))


def openai_chat(*parts: dict) -> bytes:
    return orjson.dumps({"model": GPT, "max_tokens": 5, "messages": [{"role": "user", "content": [
        *parts, {"type": "text", "text": "summarise"}]}]})


def responses(*parts: dict) -> bytes:
    return orjson.dumps({"model": GPT, "max_output_tokens": 5, "input": [{"role": "user", "content": [
        *parts, {"type": "input_text", "text": "summarise"}]}]})


def claude(*blocks: dict) -> bytes:
    return orjson.dumps({"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": [
        *blocks, {"type": "text", "text": "summarise"}]}]})


def gemini(*parts: dict) -> bytes:
    return orjson.dumps({"contents": [{"role": "user", "parts": [*parts, {"text": "summarise"}]}],
                         "generationConfig": {"maxOutputTokens": 5}})


OPENAI_CHAT, RESPONSES = "/openai/v1/chat/completions", "/openai/v1/responses"
CLAUDE_PATH, GEMINI_PATH = "/anthropic/v1/messages", f"/gemini/v1beta/models/{GEMINI}:generateContent"
# (path, body, references it carries): each reference must add MEDIA_TOKENS_MAX to the hold.
REFERENCES = [
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_id": "file-abc"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                                        "filename": "a.pdf"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_id": "file-a"}},
                              {"type": "file", "file": {"file_id": "file-b"}}), 2),
    (RESPONSES, responses({"type": "input_file", "file_id": "file-abc"}), 1),
    (RESPONSES, responses({"type": "input_file", "file_url": "https://example.com/a.pdf"}), 1),
    (RESPONSES, responses({"type": "input_image", "file_id": "file-abc"}), 1),
    (CLAUDE_PATH, claude({"type": "document", "source": {"type": "file", "file_id": "file_011"}}), 1),
    (CLAUDE_PATH, claude({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}), 1),
    (CLAUDE_PATH, claude({"type": "image", "source": {"type": "file", "file_id": "file_011"}}), 1),
    (CLAUDE_PATH, claude({"type": "container_upload", "file_id": "file_011"}), 1),
    (CLAUDE_PATH, claude({"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}), 1),
    (GEMINI_PATH, gemini({"fileData": {"mimeType": "application/pdf", "fileUri": "https://g/files/abc"}}), 1),
    (GEMINI_PATH, gemini({"file_data": {"mime_type": "video/mp4", "file_uri": "gs://bucket/v.mp4"}}), 1),
    (GEMINI_PATH, gemini({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}), 1),
    (GEMINI_PATH, gemini({"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}}), 1),
]


@pytest.mark.parametrize("path, body, references", REFERENCES,
                         ids=[f"{r[0].split('/')[1]}-{orjson.loads(r[1]).__repr__()[:0]}{n}"
                              for n, r in enumerate(REFERENCES)])
async def test_each_file_or_media_reference_is_held_at_the_media_bound(recorded, path, body, references):
    stack, _ = recorded
    await post(stack, path, body)
    held = await stack.database.fetchval(
        "SELECT amount_micro FROM transfers WHERE phase = 'pending' AND user_id = $1 ORDER BY id DESC LIMIT 1",
        stack.user["id"])
    assert held == hold_for(len(body) + references * MEDIA_TOKENS_MAX, 5)


# -- M6: bodies that do not inflate, and odd credentials -----------------------------------------


@pytest.mark.parametrize("path, encoding, body", [
    (OPENAI_CHAT, "deflate", b"garbage"),
    (OPENAI_CHAT, "gzip", b"\x1f\x8b\x08\x00garbage"),
    (CLAUDE_PATH, "gzip", b"garbage"),
    (GEMINI_PATH, "deflate", b"\x78\x9c garbage"),
])
async def test_a_body_that_does_not_inflate_is_a_provider_shaped_400(recorded, path, encoding, body):
    stack, upstream = recorded
    answer = await post(stack, path, body, headers={"Content-Encoding": encoding})
    assert answer.status == 400, answer.body
    error = answer.json()
    if path == CLAUDE_PATH:
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    elif path == GEMINI_PATH:
        assert error["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert error["error"]["type"] == "invalid_request_error"
    assert upstream.seen == []
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer \xff\xfe"},
    {"Authorization": "Bearer tg_" + "\xff" * 43},
    {"Authorization": "\xff"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer \t "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"x-api-key": "\xc3\x28"},
    {"x-goog-api-key": "tg_\xe2\x82"},
])
async def test_an_odd_credential_header_is_a_provider_shaped_401(recorded, headers):
    stack, upstream = recorded
    for path, shape in ((OPENAI_CHAT, "openai"), (CLAUDE_PATH, "anthropic"), (GEMINI_PATH, "gemini")):
        answer = await raw_request(stack.gateway.server.port, "POST", path,
                                   {"Content-Type": "application/json", **headers}, openai_chat())
        assert answer.status == 401, (path, answer.body)
        error = answer.json()
        if shape == "anthropic":
            assert error["error"]["type"] == "authentication_error"
        elif shape == "gemini":
            assert error["error"]["status"] == "UNAUTHENTICATED"
        else:
            assert error["error"]["type"] == "authentication_error"
    answer = await raw_request(stack.gateway.server.port, "POST", f"{GEMINI_PATH}?key=%ff%fe",
                               {"Content-Type": "application/json"}, gemini())
    assert answer.status == 401 and answer.json()["error"]["status"] == "UNAUTHENTICATED"
    assert upstream.seen == []
