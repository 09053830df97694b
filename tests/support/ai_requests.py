"""AI request bodies that carry files or media, and raw posts of them to the gateway."""

from __future__ import annotations

import orjson

from tests.support.ai import CLAUDE, GEMINI, GPT
from tests.support.ai_fakes import raw_request


async def post(stack, path: str, body: bytes, key: str | None = None, headers: dict | None = None):
    return await raw_request(stack.gateway.server.port, "POST", path, {
        "Authorization": f"Bearer {key or stack.key}", "x-goog-api-key": key or stack.key,
        "Content-Type": "application/json", **(headers or {})}, body)


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


async def send(stack, method: str, target: str, body: bytes = b""):
    headers = {"Authorization": f"Bearer {stack.key}", "x-goog-api-key": stack.key}
    if body:
        headers["Content-Type"] = "application/json"
    return await raw_request(stack.gateway.server.port, method, target, headers, body)
