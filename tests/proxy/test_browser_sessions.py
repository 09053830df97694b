"""Browser sessions in PostgreSQL: session ids, single-use links, and the triggers that end sessions
and queue their tombstones."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.accounts import access_tokens
from gateway.proxy import browser_sessions
from tests.support.accounts import make_token

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value, parsed", [
    ("a" * 64 + "." + "b" * 43, True),
    ("A" * 64 + "." + "b" * 43, False),  # the hash is written in lower case only
    ("a" * 64 + "." + "b" * 42, False),
    ("a" * 63 + "." + "b" * 43, False),
    ("a" * 64 + "." + "b" * 42 + "!", False),
    ("a" * 64 + "." + "b" * 43 + "\n", False),
    ("", False),
])
def test_a_session_id_is_a_token_hash_and_a_secret(value, parsed):
    assert (browser_sessions.parse(value) is not None) is parsed


def test_the_session_hash_is_the_secrets_sha256():
    session = browser_sessions.parse("0f" * 32 + "." + "s" * 43)
    assert session == browser_sessions.SessionId(bytes.fromhex("0f" * 32), browser_sessions.digest("s" * 43))


async def open_for(database, issued, ttl_s: int = 3600) -> browser_sessions.OpenedSession:
    return await browser_sessions.open_session(
        database, token_id=issued.id, token_hash=access_tokens.digest(issued.token), device_id="laptop",
        token_expires_at=issued.expires_at, now=dt.datetime.now(dt.timezone.utc), ttl_s=ttl_s)


async def test_a_session_is_found_by_its_cookie_and_only_for_its_token(database):
    issued = await make_token(database)
    other = await make_token(database, email="other@example.com")
    opened = await open_for(database, issued)
    session = browser_sessions.parse(opened.cookie_value)
    found = await browser_sessions.find(database, session)
    assert found is not None and (found.device_id, found.ended) == ("laptop", False)
    forged = browser_sessions.SessionId(access_tokens.digest(other.token), session.session_hash)
    assert await browser_sessions.find(database, forged) is None


async def test_a_session_ends_once_and_queues_its_tombstone_with_its_tokens_hash(database):
    issued = await make_token(database)
    session = browser_sessions.parse((await open_for(database, issued)).cookie_value)
    assert await browser_sessions.end(database, session, "logout", NOW) is True
    assert await browser_sessions.end(database, session, "logout", NOW) is False
    queued = await database.fetch("SELECT kind, credential_hash, state, token_hash FROM credential_cache_outbox")
    assert [tuple(row) for row in queued] == [
        ("browser_session", session.session_hash, "revoked", access_tokens.digest(issued.token))]


async def test_revoking_a_token_ends_its_sessions_and_voids_its_links(database):
    issued = await make_token(database)
    for _ in range(2):
        await open_for(database, issued)
    await browser_sessions.make_link(database, token_id=issued.id, device_id="laptop", path="/", now=NOW, ttl_s=60)
    await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    reasons = await database.fetch("SELECT end_reason FROM browser_sessions")
    assert [row["end_reason"] for row in reasons] == ["token_revoked", "token_revoked"]
    assert await database.fetchval("SELECT count(*) FROM browser_session_links") == 0
    kinds = await database.fetch("SELECT kind FROM credential_cache_outbox ORDER BY id")
    assert sorted(row["kind"] for row in kinds) == ["browser_session", "browser_session", "token"]


async def test_a_session_never_outlives_its_token(database):
    issued = await make_token(database, hours=1)
    opened = await open_for(database, issued, ttl_s=24 * 3600)
    assert opened.expires_at == issued.expires_at


async def test_a_link_is_redeemed_once_even_by_two_browsers_at_the_same_moment(database):
    issued = await make_token(database)
    now = dt.datetime.now(dt.timezone.utc)
    code, _ = await browser_sessions.make_link(database, token_id=issued.id, device_id="laptop", path="/page2",
                                               now=now, ttl_s=60)
    landings = await asyncio.gather(*(browser_sessions.redeem_link(database, code, now=now, ttl_s=3600)
                                      for _ in range(2)))
    assert sorted(landing is None for landing in landings) == [False, True]
    assert [landing.path for landing in landings if landing] == ["/page2"]
    assert await database.fetchval("SELECT count(*) FROM browser_sessions") == 1


async def test_making_a_link_clears_the_expired_ones(database):
    issued = await make_token(database)
    for minutes in (0, 5):
        await browser_sessions.make_link(database, token_id=issued.id, device_id="laptop", path="/",
                                         now=NOW + dt.timedelta(minutes=minutes), ttl_s=60)
    assert await database.fetchval("SELECT count(*) FROM browser_session_links") == 1
