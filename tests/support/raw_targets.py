"""Targets that show what really went over the wire: a raw-socket keep-alive target and an nginx-like one."""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web


@dataclass
class Received:
    """One request as the raw target framed it: its request line, header lines and body bytes."""

    request_line: bytes
    header_lines: list[bytes]
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        for line in self.header_lines:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class EarlyTarget:
    """A keep-alive target on a raw socket that answers `*/early` before reading the body.

    With `drain` it then skips Content-Length bytes, as most servers do; without, it parses whatever
    follows the head of an `/early` request as the next request (the report's non-draining target).
    Other requests have their Content-Length bytes recorded as their body. Answers are `200 ok`.
    """

    drain: bool
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    server: asyncio.AbstractServer | None = None

    @property
    def request_lines(self) -> list[bytes]:
        return [received.request_line for received in self.requests]

    async def start(self) -> "EarlyTarget":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer, to_take, current = b"", 0, None
        try:
            while data := await reader.read(65536):
                buffer += data
                while True:
                    taken, buffer = buffer[:to_take], buffer[to_take:]
                    to_take -= len(taken)
                    if current is not None:
                        current.body += taken
                    if to_take or b"\r\n\r\n" not in buffer:
                        break
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.split(b"\r\n")
                    current = Received(lines[0], lines[1:])
                    self.requests.append(current)
                    length = int(current.header(b"content-length") or b"0")
                    to_take = length if (self.drain or b"/early" not in lines[0]) else 0
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except ConnectionError:
            pass
        finally:
            writer.close()


@dataclass
class NormalisingTarget:
    """An nginx-like target: decodes the path, resolves dot segments, then serves by prefix.

    Anything that resolves under /internal is a secret; the paths it saw are recorded raw.
    """

    raw_paths: list[str] = field(default_factory=list)

    async def serve(self, request: web.Request) -> web.Response:
        self.raw_paths.append(request.raw_path)
        resolved = posixpath.normpath(unquote(request.raw_path.split("?")[0]))
        kind = "SECRET" if resolved.startswith("/internal") else "app"
        return web.Response(text=f"{kind} {resolved}")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.serve)
        return app
