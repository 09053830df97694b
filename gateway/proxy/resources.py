"""The desktop path's resources: its app keys, the shared target session, the authenticator, and
the session recorder with its flush task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import CLOCK, DATABASE, READINESS_PROBES, REDIS, SETTINGS
from gateway.proxy.authentication import Authenticator
from gateway.proxy.forwarding import INVENTED_HEADERS
from gateway.proxy.rewriting import UrlMap
from gateway.proxy.sessions import SessionRecorder

TARGET_SESSION = web.AppKey("target_session", aiohttp.ClientSession)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
SESSIONS = web.AppKey("sessions", SessionRecorder)
URL_MAPS = web.AppKey("url_maps", dict[str, UrlMap])  # mount prefix -> UrlMap, precomputed at start-up
# The gateway's origin as browsers write it in Origin, for the cookie session's cross-site rule.
PUBLIC_ORIGIN = web.AppKey("public_origin", str)


def _target_session(settings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=settings.upstream_connections_max, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, connect=settings.upstream_connect_timeout_s,
                                    sock_read=settings.upstream_read_timeout_s)
    # Only the client's own headers go upstream: no invented User-Agent or Accept-Encoding, nor the
    # Accept and Content-Type aiohttp would add (skipped here once, not per request).
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar(),
                                 skip_auto_headers=("User-Agent", "Accept-Encoding", *INVENTED_HEADERS))


async def _probe_target(app: web.Application) -> None:
    async with app[TARGET_SESSION].head(app[SETTINGS].target_url, allow_redirects=False) as response:
        # Any HTTP answer means the target is reachable; only transport failures count.
        response.release()


async def proxy_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[TARGET_SESSION] = _target_session(settings)
    app[AUTHENTICATOR] = Authenticator(settings, app[REDIS], app[DATABASE], app[CLOCK], app[CREDENTIAL_OUTBOX])
    recorder = app[SESSIONS] = SessionRecorder(app[DATABASE], app[CLOCK], idle_s=settings.device_idle_s,
                                               pending_max=settings.session_pending_max)
    app[READINESS_PROBES]["target"] = _probe_target
    flusher = asyncio.create_task(recorder.run(settings.session_flush_interval_s), name="sessions")
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    with contextlib.suppress(Exception):
        await recorder.flush()  # last counters out before the pool closes
    await app[AUTHENTICATOR].close()
    await app[TARGET_SESSION].close()
