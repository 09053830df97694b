"""What a fault does to an answer: refused, held back, cut by a reset, slowed or cut mid-stream."""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

from devkit.mock_ai.replies import MockApiError, Reply
from devkit.mock_ai.state import AiState, Fault

FAULT_MODES = ("none", "500", "429", "timeout", "reset", "reset_mid_stream", "slow_stream")
SLOW_STREAM_DELAY_MS_DEFAULT = 1000
TIMEOUT_FAULT_MS_DEFAULT = 300_000  # longer than any client timeout; ends early when the client leaves
DISCONNECT_POLL_S = 0.05


async def pause(request: web.Request, delay_s: float) -> bool:
    """Sleep, but stop early (returning False) once the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay_s
    while (remaining := deadline - loop.time()) > 0:
        if request.transport is None or request.transport.is_closing():
            return False
        await asyncio.sleep(min(remaining, DISCONNECT_POLL_S))
    return request.transport is not None and not request.transport.is_closing()


def reset_connection(request: web.Request) -> None:
    """Send a TCP RST: SO_LINGER with a zero timeout makes close() abort the connection."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def early_fault(request: web.Request, fault: Fault | None) -> bool:
    """Apply a fault that strikes before any answer; False when the connection is gone."""
    if fault is None:
        return True
    if fault.mode == "500":
        raise MockApiError(500, "The server had an error while processing your request. Sorry about that!")
    if fault.mode == "429":
        raise MockApiError(429, "Rate limit reached for requests. Please try again later.",
                           code="rate_limit_exceeded", headers={"Retry-After": str(fault.retry_after_s)})
    if fault.mode == "timeout":
        return await pause(request, (fault.delay_ms or TIMEOUT_FAULT_MS_DEFAULT) / 1000)
    if fault.mode == "reset":
        reset_connection(request)
        return False
    return True


async def deliver(request: web.Request, reply: Reply, fault: Fault | None, state: AiState) -> web.StreamResponse:
    """Send a reply, cut or slowed as the fault says; stream frames go out one by one, each split in two."""
    mode = fault.mode if fault is not None and reply.status == 200 else "none"
    if not reply.stream and mode != "reset_mid_stream":
        if mode == "slow_stream" and not await pause(request, slow_delay_s(fault)):
            return web.Response(status=499)
        response = web.Response(body=reply.parts[0], status=reply.status, headers=reply.headers)
        response.headers["Content-Type"] = reply.content_type
        return response
    response = web.StreamResponse(status=reply.status, headers={**reply.headers, "Cache-Control": "no-cache"})
    response.headers["Content-Type"] = reply.content_type
    if reply.stream:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(reply.parts[0])
    await response.prepare(request)
    data = reply.parts if reply.stream else (reply.parts[0][: len(reply.parts[0]) // 2],)
    cut_at = max(1, len(data) // 2) if mode == "reset_mid_stream" else len(data)
    delay_s = slow_delay_s(fault) if mode == "slow_stream" else state.chunk_delay_ms / 1000
    try:
        for number, frame in enumerate(data[:cut_at]):
            if number and not await pause(request, delay_s):
                return response
            await write_split(response, frame, delay_s)
        if mode == "reset_mid_stream":
            await asyncio.sleep(0.05)  # let the partial stream reach the client before the cut
            assert request.transport is not None
            request.transport.abort()  # no terminating chunk: the client sees a broken stream
            return response
        await response.write_eof()
    except ConnectionError:
        pass  # the client left mid-stream; nothing more to do
    return response


async def write_split(response: web.StreamResponse, frame: bytes, delay_s: float) -> None:
    """Write a frame in two pieces, so readers must join events that straddle network reads."""
    middle = len(frame) // 2
    await response.write(frame[:middle])
    if delay_s:
        await asyncio.sleep(min(delay_s, 0.001))
    await response.write(frame[middle:])


def slow_delay_s(fault: Fault | None) -> float:
    return ((fault.delay_ms if fault and fault.delay_ms is not None else SLOW_STREAM_DELAY_MS_DEFAULT) / 1000)
