"""Test helpers for the AI routes: a raw-socket HTTP client (paths go out byte for byte) and a recording
upstream that answers every path like the three providers and keeps every request it saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

CHAT_TEXT = "The recorded upstream answers in six short pieces."


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return orjson.loads(self.body)


async def raw_request(port: int, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes = b"", read_timeout_s: float = 10.0) -> RawAnswer:
    """One request whose request line is written exactly as given (no client normalises `../`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
            f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), read_timeout_s)
    writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    answer_headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    if answer_headers.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return RawAnswer(status, answer_headers, rest)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


@dataclass
class Seen:
    method: str
    raw_path: str  # exactly as on the request line, query included
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingUpstream:
    """Answers like OpenAI, Anthropic and Gemini (JSON or SSE) on any path, and records each request.

    `with_usage=False` plays an OpenAI-compatible server that never reports usage.
    """

    with_usage: bool = True
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        path = request.path
        stream = b'"stream":true' in body.replace(b" ", b"") or ":streamGenerateContent" in path
        if path.endswith("/models") or "/models/" in path and request.method == "GET":
            return web.json_response({"object": "list", "data": []})
        if path.endswith("count_tokens"):
            return web.json_response({"input_tokens": 3})
        if path.endswith(":countTokens"):
            return web.json_response({"totalTokens": 3})
        if stream:
            return await self._stream(request, path)
        if path.endswith("/messages"):
            return web.json_response({"type": "message", "role": "assistant", "content": [
                {"type": "text", "text": CHAT_TEXT}], "stop_reason": "end_turn",
                **({"usage": {"input_tokens": 3, "output_tokens": 6}} if self.with_usage else {})})
        if ":generateContent" in path:
            return web.json_response({"candidates": [{"content": {"parts": [{"text": CHAT_TEXT}]},
                                                      "finishReason": "STOP"}],
                                      **({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 6}}
                                         if self.with_usage else {})})
        return web.json_response({"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": CHAT_TEXT}, "finish_reason": "stop"}],
            **({"usage": {"prompt_tokens": 3, "completion_tokens": 6}} if self.with_usage else {})})

    async def _stream(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await answer.prepare(request)
        pieces = [CHAT_TEXT[i:i + 9] for i in range(0, len(CHAT_TEXT), 9)][:6]
        if ":streamGenerateContent" in path:
            for number, piece in enumerate(pieces):
                chunk: dict = {"candidates": [{"content": {"parts": [{"text": piece}]}}]}
                if number == len(pieces) - 1:
                    chunk["candidates"][0]["finishReason"] = "STOP"
                    if self.with_usage:
                        chunk["usageMetadata"] = {"promptTokenCount": 3, "candidatesTokenCount": 6}
                await answer.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
        else:
            for piece in pieces:
                await answer.write(b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}) + b"\n\n")
            await answer.write(b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n")
            if self.with_usage:
                await answer.write(b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [],
                                                             "usage": {"prompt_tokens": 3,
                                                                       "completion_tokens": 6}}) + b"\n\n")
            await answer.write(b"data: [DONE]\n\n")
        await answer.write_eof()
        return answer

    def streamed_text(self) -> str:
        return "".join(CHAT_TEXT[i:i + 9] for i in range(0, len(CHAT_TEXT), 9)[:6])


async def recording_upstream(aiohttp_raw_server, with_usage: bool = True) -> tuple[RecordingUpstream, str]:
    """A RecordingUpstream on loopback (a low-level server: every path reaches it); returns it and its URL."""
    upstream = RecordingUpstream(with_usage=with_usage)
    server = await aiohttp_raw_server(upstream.handle)
    return upstream, str(server.make_url("")).rstrip("/")


async def read_then_leave(port: int, target: str, headers: dict[str, str], body: bytes,
                          enough: Callable[[bytes], bool], timeout_s: float = 20.0) -> bytes:
    """Send a request, read the answer until `enough(bytes so far)`, then close the socket, as a
    client that got what it wanted and left before the end of the stream."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    got = b""
    while not enough(got):
        chunk = await asyncio.wait_for(reader.read(65536), timeout_s)
        if not chunk:
            break
        got += chunk
    writer.close()
    return got
