"""Client connections: a deadline for request heads, caps on open connections, and parser errors as JSON.

aiohttp's server has a keep-alive timeout but no deadline for a request head, so a connection
that sends a head slowly, or part of one, stays open for good (attack 2026-12-01, M7); and its
answer to a request its parser refuses is text/plain, echoes the offending bytes, names the
aiohttp version and logs a traceback (L3). The gateway's request handler adds the first and
replaces the second; the HTTP parsing itself stays aiohttp's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.core import metrics
from gateway.core.addresses import address_group
from gateway.core.errors import ExpectationFailed, GatewayError
from gateway.core.app_keys import ERROR_SHAPE_PREFIXES, SETTINGS, STOPPING
from gateway.core.error_shapes import error_response, shape_for_path
from gateway.core.outcomes import Outcome

log = logging.getLogger(__name__)
# What every response says in its Server header: no software version for anyone to match.
SERVER_NAME = "tollgate"
# At shutdown, how long a request cancelled at the end of the grace gets to settle (one statement
# bounded by TOLLGATE_DATABASE_TIMEOUT_S, normally milliseconds).
CANCELLED_WAIT_S = 15.0


class ConnectionLimits:
    """The open client connections of one worker, in total and by peer address."""

    def __init__(self, total_max: int, per_address_max: int) -> None:
        self.total_max = total_max  # 0 = unlimited
        self.per_address_max = per_address_max  # 0 = unlimited
        self.total = 0
        self.by_address: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """Count a new connection in; or, if it would pass a cap, name that cap and count nothing."""
        if self.total_max and self.total >= self.total_max:
            return "total_limit"
        held = self.by_address.get(address, 0)
        if self.per_address_max and held >= self.per_address_max:
            return "ip_limit"
        self.total += 1
        self.by_address[address] = held + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        held = self.by_address[address] - 1
        if held:
            self.by_address[address] = held
        else:
            del self.by_address[address]  # the table holds only addresses with open connections


class GatewayRequestHandler(RequestHandler):
    """aiohttp's protocol for one client connection, plus admission, a head deadline, JSON errors and
    a bounded drain at shutdown.

    It reads a few of its base class's attributes (_messages, _request_in_progress, _manager) to
    tell "waiting for a request head" from "serving a request", and _task_handler and _force_close
    to drain; tests/core/test_connections.py and tests/test_server.py cover the behaviour end to
    end, so a change in aiohttp shows there.
    """

    __slots__ = ("_address", "_head_deadline", "_limits", "_head_timeout_s")

    def __init__(self, manager: GatewayServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = manager.limits
        self._head_timeout_s = manager.head_timeout_s
        self._address: str | None = None  # set once admitted
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = address_group(str(peer[0])) if peer else ""  # an IPv6 client is its /64
        refused = self._limits.admit(address)
        if refused is not None:
            metrics.labelled(metrics.CONNECTIONS_CLOSED, refused).inc()
            # The descriptor is freed now, not after a goodbye the peer may not read.
            cast(asyncio.Transport, transport).abort()
            return
        self._address = address
        super().connection_made(transport)
        self._start_head_deadline()  # the first request head is due too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._address is None:
            return  # refused in connection_made: never set up, nothing to undo
        self._stop_head_deadline()
        self._limits.release(self._address)
        self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_head():
            self._start_head_deadline()  # a head has begun; the clock runs from its first bytes
        else:
            self._stop_head_deadline()

    def _waiting_for_head(self) -> bool:
        return not self._request_in_progress and not self._messages and self.transport is not None

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self._loop.call_later(self._head_timeout_s, self._head_overdue)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head():  # checked again: a request may have started since
            metrics.labelled(metrics.CONNECTIONS_CLOSED, "head_timeout").inc()
            self.force_close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        """aiohttp's, except that a request still running when `timeout` (the grace) ends is cancelled
        at once: aiohttp would fail only its request body, then wait as long again. Cancelled, a
        handler settles what it metered (shielded); that is awaited, within CANCELLED_WAIT_S."""
        task = self._task_handler
        if task is not None and not task.done() and self._request_in_progress:
            self._force_close = True  # the connection closes once this request is answered
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=CANCELLED_WAIT_S)
        await super().shutdown(timeout)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The answer to a request the parser refused (400), or to a failure outside the middleware.

        Neither the offending bytes nor a traceback go anywhere: a parser error is the client's
        doing and costs one short warning naming the peer and the parser's complaint (decision 0026).
        """
        request_id = os.urandom(16).hex()
        if status == 400:
            log.warning("malformed request from %s: %s", request.remote, type(exc).__name__)
            code, text, outcome = "malformed_request", "malformed HTTP request", Outcome.MALFORMED_REQUEST
        else:
            log.error("failure outside the middleware request_id=%s", request_id, exc_info=exc)
            code, text, outcome = "internal_error", "internal error", Outcome.ERROR
        if request.writer.output_size > 0:
            raise ConnectionError("a response has started; the connection is closed instead")
        metrics.labelled(metrics.REQUESTS, "malformed" if status == 400 else "unrouted", "other",
                         str(status), str(outcome)).inc()
        error = GatewayError(text, code=code)
        error.status = status
        response = _shaped("api", error, request_id=request_id)  # before routing: the gateway's JSON
        response.force_close()
        return response


class GatewayServer(web.Server):
    """aiohttp's server, making GatewayRequestHandlers that share one worker's ConnectionLimits."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits, head_timeout_s: float,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.head_timeout_s = head_timeout_s

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """The runner for the gateway's application: what `serve`, `dev` and the tests all run."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        # The gateway's own log lines and metrics record requests; aiohttp's access log would
        # write a second line per request.
        kwargs.setdefault("access_log", None)
        # On cleanup aiohttp closes the listeners and idle connections, waits this long for the
        # requests in flight, then cancels them (each settles what it metered) and waits again.
        kwargs.setdefault("shutdown_timeout", app[SETTINGS].shutdown_grace_s)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the application and merges its handler_args
        settings = self.app[SETTINGS]
        # _kwargs: the keywords aiohttp gathered for each connection's RequestHandler.
        return GatewayServer(_errors_as_json(made.request_handler, self.app[ERROR_SHAPE_PREFIXES]),
                             request_factory=made.request_factory,
                             handler_cancellation=made.handler_cancellation, loop=asyncio.get_running_loop(),
                             limits=ConnectionLimits(settings.connections_max, settings.connections_per_ip_max),
                             head_timeout_s=settings.request_head_timeout_s, **made._kwargs)


async def stopping(app: web.Application) -> None:
    """on_shutdown: runs once the listeners are closed, before the wait for requests in flight."""
    app[STOPPING].set()
    log.info("stopping: requests in flight get up to %.1f s to finish", app[SETTINGS].shutdown_grace_s)


def _errors_as_json(handle: Any, shape_prefixes: list[tuple[str, str]]) -> Any:
    """Errors that aiohttp would answer before the middleware runs, in the documented shapes.

    Its Expect handling answers anything but 100-continue with 417 'Unknown Expect: <the
    client's value>' as text (a 500 when the value is not UTF-8); the gateway answers it here in
    the route's error shape, echoing nothing, and lets aiohttp send its interim 100 Continue for
    the one value it knows.
    """

    async def handle_request(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get("expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            return _shaped(shape_for_path(request.path, shape_prefixes), ExpectationFailed())
        try:
            return await handle(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return _shaped("api", GatewayError(error.reason, code="bad_request"), status=error.status)

    return handle_request


def _shaped(shape: str, error: GatewayError, *, status: int | None = None,
            request_id: str | None = None) -> web.Response:
    response = error_response(shape, error, request_id or os.urandom(16).hex())
    if status is not None:
        response.set_status(status)
    response.headers["Server"] = SERVER_NAME  # the app's prepare hook does not run for these
    return response

