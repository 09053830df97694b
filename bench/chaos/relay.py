"""A TCP relay between the gateway and its upstreams that can turn slow, reset or answer 5xx on demand.

The gateway reaches the mock upstream (HTML target and AI APIs) only through this relay, so an
upstream fault hits the desktop path and the AI path alike without changing what the load asks
for. Bytes pass through untouched; the relay never reads HTTP. Switching the mode cuts every open
connection (the gateway's pooled keep-alive connections too), so the new mode applies at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

MODES = ("pass", "slow", "reset", "5xx")
READ_CHUNK_BYTES = 64 * 1024
# The whole answer of the "5xx" mode: a fixed, complete HTTP/1.1 message that closes the connection.
SERVICE_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 33\r\nConnection: close\r\n\r\n"
                       b'{"error": "upstream unavailable"}')


def _abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN, as a crashed or cut peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultRelay:
    """Listens on 127.0.0.1:port and relays to 127.0.0.1:upstream_port in the current mode."""

    def __init__(self, upstream_port: int, *, slow_delay_s: float = 1.5) -> None:
        self.upstream_port = upstream_port
        self.slow_delay_s = slow_delay_s  # before each chunk the upstream sends, in "slow" mode
        self.mode = "pass"
        self.port = 0
        self.connections = 0  # accepted, for the report
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        for writer in list(self._open):
            _abort_with_reset(writer)
        self._open.clear()

    async def close(self) -> None:
        """Stop listening, cut every connection and wait for their handlers to end."""
        if self._server is None:
            return
        self._server.close()
        self.set_mode("pass")
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._relay(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.mode
        if mode == "reset":
            _abort_with_reset(writer)
            return
        if mode == "5xx":
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(reader.read(READ_CHUNK_BYTES), 5)  # the request's first bytes
                writer.write(SERVICE_UNAVAILABLE)
                await writer.drain()
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _abort_with_reset(writer)
            return
        self._open.update((writer, upstream_writer))
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer, delay=False),
                                 self._pipe(upstream_reader, writer, delay=mode == "slow"))
        finally:
            for end in (writer, upstream_writer):
                self._open.discard(end)
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(READ_CHUNK_BYTES):
                if delay:
                    await asyncio.sleep(self.slow_delay_s)
                writer.write(data)
                await writer.drain()
        # One side finished: end the other's writing half so keep-alive peers see the close.
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
