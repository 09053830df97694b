"""Typed application keys: every shared resource the handlers reach through the app."""

from __future__ import annotations

import aiohttp
import asyncpg
import redis.asyncio as redis_asyncio
from aiohttp import web

from gateway.proxy.authentication import Authenticator
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.proxy.rewriting import UrlMap
from gateway.proxy.sessions import SessionRecorder

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", asyncpg.Pool)
REDIS = web.AppKey("redis", redis_asyncio.Redis)
TARGET_SESSION = web.AppKey("target_session", aiohttp.ClientSession)
CREDENTIAL_OUTBOX = web.AppKey("credential_outbox", CredentialOutbox)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
SESSIONS = web.AppKey("sessions", SessionRecorder)
MAILER = web.AppKey("mailer", object)  # gateway.accounts.mail.Sender
URL_MAPS = web.AppKey("url_maps", dict)  # mount prefix -> UrlMap, precomputed at start-up
