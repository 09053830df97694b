"""Revocation wins over a Redis blip (attack M8): a credential revoked while Redis is frozen is
never served again from the stale record Redis still holds when it resumes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys

from gateway.accounts import access_tokens
from gateway.accounts.credential_cache import browser_session_key, token_record_key
from gateway.core.app_keys import REDIS
from gateway.proxy import browser_sessions
from gateway.proxy.resources import AUTHENTICATOR
from tests.support.accounts import make_token, proxy_headers, register
from tests.support.proxy import cookie_headers, error_of, open_browser_session
from tests.support.store_faults import start_gateway

ECHO = "/api/v1/proxy/echo/x"


async def statuses(gateway, headers: dict, times: int = 3) -> list[int]:
    return [(await gateway.get(ECHO, headers=headers)).status for _ in range(times)]


async def test_a_token_revoked_while_redis_is_frozen_stays_revoked_when_it_resumes(
        gateway_factory, database, frozen_redis):
    redis, pid = frozen_redis
    gateway = await start_gateway(gateway_factory, redis.url)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await gateway.get(ECHO, headers=headers)).status == 200  # the 'ok' record is now cached
    os.kill(pid, signal.SIGSTOP)
    # Revoked the way the CLI and any other writer do it: straight in PostgreSQL.
    await database.execute("UPDATE access_tokens SET revoked_at = now() WHERE id = $1", issued.id)
    assert await statuses(gateway, headers) == [401, 401, 401]
    os.kill(pid, signal.SIGCONT)
    for _ in range(10):  # before, during and after the outbox reaches Redis
        assert (await gateway.get(ECHO, headers=headers)).status == 401
        await asyncio.sleep(0.1)
    # The queued refusal reaches Redis (within a poll interval of Redis answering) and leaves the queue.
    for _ in range(50):
        if await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0:
            break
        await asyncio.sleep(0.1)
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0
    record = await gateway.app[REDIS].hget(token_record_key(access_tokens.digest(issued.token)), "state")
    assert record == "revoked"


async def test_a_token_revoked_during_a_network_blip_is_refused_from_memory_until_redis_has_it(
        gateway_factory, database, partition):
    relay, url = partition
    gateway = await start_gateway(gateway_factory, url)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await gateway.get(ECHO, headers=headers)).status == 200
    relay.set_cut(True)
    await database.execute("UPDATE access_tokens SET revoked_at = now() WHERE id = $1", issued.id)
    await asyncio.sleep(0.5)  # the gateway heard of it (NOTIFY) and could not write it to Redis
    relay.set_cut(False)
    # Redis is back with the stale 'ok' record: the gateway still refuses, from its memory.
    assert (await gateway.get(ECHO, headers=headers)).status == 401
    for _ in range(40):  # and within the outbox's poll interval the tombstone is in Redis
        if await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0:
            break
        await asyncio.sleep(0.1)
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0
    assert (await gateway.get(ECHO, headers=headers)).status == 401


async def test_a_second_gateway_that_never_saw_the_outage_refuses_too(gateway_factory, database, partition):
    relay, url = partition
    first = await start_gateway(gateway_factory, url)
    second = await start_gateway(gateway_factory, url)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await second.get(ECHO, headers=headers)).status == 200
    relay.set_cut(True)
    await database.execute("UPDATE access_tokens SET revoked_at = now() WHERE id = $1", issued.id)
    await asyncio.sleep(0.5)  # the NOTIFY reaches both gateways; their pushes to Redis fail
    relay.set_cut(False)
    # The second gateway made no request while Redis was cut off: its memory of the queued
    # refusal, not a fallback to PostgreSQL, is what refuses the stale record.
    assert (await second.get(ECHO, headers=headers)).status == 401
    assert (await first.get(ECHO, headers=headers)).status == 401


async def test_an_api_key_revoked_during_a_redis_blip_stays_revoked(gateway_factory, database, partition):
    relay, url = partition
    gateway = await start_gateway(gateway_factory, url)
    user = await register(gateway)
    response = await gateway.post("/api/v1/keys", headers=user["headers"], json={"name": "k"})
    key = await response.json()
    bearer = {"Authorization": f"Bearer {key['key']}"}
    assert (await gateway.get("/api/v1/balance", headers=bearer)).status == 200
    relay.set_cut(True)
    await database.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key["id"])
    await asyncio.sleep(0.3)
    relay.set_cut(False)
    for _ in range(5):
        assert (await gateway.get("/api/v1/balance", headers=bearer)).status == 401
        await asyncio.sleep(0.1)


async def test_a_user_disabled_during_a_redis_blip_stays_disabled(gateway_factory, database, partition):
    relay, url = partition
    gateway = await start_gateway(gateway_factory, url)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await gateway.get(ECHO, headers=headers)).status == 200
    relay.set_cut(True)
    user_id = await database.fetchval("SELECT user_id FROM access_tokens WHERE id = $1", issued.id)
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", user_id)
    await asyncio.sleep(0.3)
    relay.set_cut(False)
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=headers)).status == 403
        await asyncio.sleep(0.1)
    # Enabled again: the refusal is lifted and the token works.
    await database.execute("UPDATE users SET is_active = true WHERE id = $1", user_id)
    for _ in range(50):
        if (await gateway.get(ECHO, headers=headers)).status == 200:
            break
        await asyncio.sleep(0.05)
    assert (await gateway.get(ECHO, headers=headers)).status == 200


async def test_the_cli_revokes_while_redis_is_down_and_says_the_refusal_is_queued(
        gateway_factory, database, servers, frozen_redis):
    redis, pid = frozen_redis
    gateway = await start_gateway(gateway_factory, redis.url)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await gateway.get(ECHO, headers=headers)).status == 200
    os.kill(pid, signal.SIGSTOP)
    environment = {**os.environ, "TOLLGATE_DATABASE_URL": servers.database_url,
                   "TOLLGATE_REDIS_URL": redis.url, "TOLLGATE_REDIS_TIMEOUT_S": "0.3"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "revoke-token", "--id", str(issued.id), env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert "queued" in out.decode() and b"Traceback" not in err
    os.kill(pid, signal.SIGCONT)
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=headers)).status == 401
        await asyncio.sleep(0.1)


async def test_a_browser_session_ended_during_a_network_blip_stays_ended(gateway_factory, database, partition):
    relay, url = partition
    gateway = await start_gateway(gateway_factory, url)
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200  # 'ok' cached in Redis
    relay.set_cut(True)
    # Ended the way any writer may do it: straight in PostgreSQL (its trigger queues the tombstone).
    await database.execute("UPDATE browser_sessions SET ended_at = now(), end_reason = 'logout'")
    await asyncio.sleep(0.5)  # the gateway heard of it (NOTIFY) and could not write it to Redis
    relay.set_cut(False)
    # Redis is back with the stale 'ok' session record: the gateway refuses from its memory.
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 401
    for _ in range(40):
        if await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0:
            break
        await asyncio.sleep(0.1)
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 0
    session = browser_sessions.parse(value)
    key = browser_session_key(session.token_hash, session.session_hash)
    assert await gateway.app[REDIS].hget(key, "state") == "revoked"
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 401


async def test_a_refusal_no_replica_confirmed_stays_queued_and_enforced(gateway_factory, database, redis_client):
    """With redis_revocation_replicas set, a refusal leaves the queue only once that many replicas
    of Redis hold it (WAIT; decision 0023). The tests' single Redis has none: the tombstone is
    written, but the row stays queued and the token refused from memory, whatever Redis says."""
    gateway = await gateway_factory(redis_revocation_replicas=1, redis_timeout_s=0.2)
    issued = await make_token(database)
    headers = proxy_headers(issued.token)
    assert (await gateway.get(ECHO, headers=headers)).status == 200
    cached = await redis_client.hgetall(token_record_key(access_tokens.digest(issued.token)))
    token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    await gateway.app[AUTHENTICATOR].forget(token_hash)
    assert await redis_client.hget(token_record_key(token_hash), "state") == "revoked"
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 1
    # What a failover to a replica that never got the tombstone brings back: the old record.
    await redis_client.hset(token_record_key(token_hash), mapping=cached)
    response = await gateway.get(ECHO, headers=headers)
    assert response.status == 401 and (await error_of(response))["code"] == "token_revoked"
