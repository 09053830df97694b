"""Request bodies as awkward clients send them: deflated, or a byte at a time."""

from __future__ import annotations

import asyncio
import zlib


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


async def dribble(port: int, path: str, headers: dict[str, str], body: bytes, seconds: float) -> bytes:
    """Send a head, then the body a byte at a time for `seconds`; whatever the gateway answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: gateway\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode())
    answer = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for byte in body:
        if loop.time() > deadline or reader.at_eof():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
            answer += await asyncio.wait_for(reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            break
        if b"\r\n\r\n" in answer:
            break
    writer.close()
    return answer
