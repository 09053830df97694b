"""Store outages on demand: a Redis relay to cut, a PostgreSQL relay that plays a restart."""

from __future__ import annotations

import asyncio
import struct


class Partition:
    """A TCP relay in front of Redis that the test can cut: while cut, nothing reaches Redis and
    every connection is dropped — a network blip after which Redis returns with all its data."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.cut = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            for writer in list(self.writers):
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        self.writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if self.cut:
                        break
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.writers.difference_update((writer, upstream_writer))

    async def close(self) -> None:
        self.set_cut(True)
        self.server.close()


class RestartingPostgres:
    """A TCP relay in front of the test PostgreSQL that can play a server restart.

    Relaying, it passes bytes both ways. `refuse()` cuts every relayed connection, as a restart
    does, and answers each new one with one PostgreSQL error, as the server does while it starts
    up or recovers (57P03), when it is full (53300) or while it shuts down (57P01). The attack of
    2026-12-01 (L5) saw 500s there.
    """

    def __init__(self, upstream_url: str) -> None:
        address = upstream_url.split("@", 1)[1].split("/", 1)[0]
        self.upstream_host, port = address.rsplit(":", 1)
        self.upstream_port = int(port)
        self.error = b""
        self.refused = 0
        self.relayed: list[asyncio.StreamWriter] = []

    async def start(self, database_url: str) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return database_url.replace(f"{self.upstream_host}:{self.upstream_port}", f"127.0.0.1:{port}")

    def refuse(self, sqlstate: str, message: str) -> None:
        fields = [b"SFATAL", b"VFATAL", b"C" + sqlstate.encode(), b"M" + message.encode()]
        payload = b"".join(field + b"\0" for field in fields) + b"\0"
        self.error = b"E" + struct.pack("!i", len(payload) + 4) + payload
        for writer in self.relayed:
            writer.transport.abort()

    def restore(self) -> None:
        """The server is back: new connections are relayed again."""
        self.error = b""

    async def close(self) -> None:
        self.refuse("57P01", "shutting down")
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.error:
            await self._answer_with_error(reader, writer)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self.relayed += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _answer_with_error(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!i", await reader.readexactly(4))[0]
                packet = await reader.readexactly(length - 4)
                if packet[:4] in (SSL_REQUEST, GSS_REQUEST):
                    writer.write(b"N")  # no encryption; the client goes on with its startup message
                    continue
                writer.write(self.error)
                self.refused += 1
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()


SSL_REQUEST = struct.pack("!i", 80877103)
GSS_REQUEST = struct.pack("!i", 80877104)


async def start_gateway(gateway_factory, redis_url: str):
    # Short store timeouts so a frozen Redis is noticed quickly.
    return await gateway_factory(redis_url=redis_url, redis_timeout_s=0.3, redis_retry_after_s=0.2)
