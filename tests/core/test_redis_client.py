"""The gateway on a real Redis Cluster (decision 0023): 3 masters with a replica each, started by
the tests. Every script call names keys of one hash slot, so the desktop path and the AI routes run
on it as on a single Redis; the user's and the address's limits hold across slots; revocations
reach the cluster; a master killed under load loses no money and lets no revoked token through."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import openai
import pytest
import redis

from gateway.accounts import access_tokens, api_keys
from gateway.core import metrics
from gateway.proxy.resources import AUTHENTICATOR
from tests.support.accounts import make_token, proxy_headers
from tests.support.ai import GPT, MESSAGES, start
from tests.support.proxy import error_of

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

ECHO = "/api/v1/proxy/echo/x"


def on_cluster(cluster, **changes) -> dict:
    return {"redis_url": cluster.url, "redis_cluster": True, **changes}


def fallbacks() -> float:
    """Credential lookups that found Redis unavailable (a cross-slot call would be one: redis-py
    refuses it before sending, and the gateway would fall back to PostgreSQL)."""
    return metrics.AUTH_CACHE.labels("redis_unavailable")._value.get()


def reader(cluster) -> redis.RedisCluster:
    return redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)


async def test_the_desktop_path_and_an_ai_call_run_on_the_cluster(gateway_factory, mock_target, database, cluster,
                                                                  clock):
    before = fallbacks()
    stack = await start(gateway_factory, mock_target, database, **on_cluster(cluster))
    issued = await make_token(database, email="desk@example.com")
    for _ in range(2):
        response = await stack.gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))
        assert response.status == 200
    assert int(response.headers["RateLimit-Remaining"]) == int(response.headers["RateLimit-Limit"]) - 2
    client = stack.openai()
    answer = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    await client.close()
    assert answer.usage.completion_tokens > 0
    assert len(await stack.charges()) == 1 and await stack.open_holds() == 0
    assert fallbacks() == before
    store = reader(cluster)
    tag = access_tokens.digest(issued.token).hex()
    assert store.hget(f"tg:{{{tag}}}:rec", "state") == "ok"
    assert store.hget(f"tg:{{{tag}}}:dev", "device") == "laptop"
    user_id = await database.fetchval("SELECT user_id FROM access_tokens WHERE id = $1", issued.id)
    assert store.zcard(f"tg:{{u:{user_id}}}:rl") == 2
    assert store.zcard("tg:{ip:127.0.0.1}:rl") >= 2
    key_tag, minute = api_keys.digest(stack.key).hex(), int(clock.now_s() // 60)
    assert store.hget(f"tg:{{{key_tag}}}:key", "state") == "ok"
    assert store.get(f"tg:{{{key_tag}}}:rpm:{minute}") == "1"
    assert store.get(f"tg:{{u:{stack.user['id']}}}:airpm:{minute}") == "1"  # the plan's count, the user's slot
    store.close()


async def test_the_user_and_address_limits_hold_across_slots(gateway_factory, database, cluster):
    gateway = await gateway_factory(**on_cluster(cluster, plan_limits_per_min={"free": 3, "premium": 5},
                                                 ip_limit_per_min=5))
    tokens = [await make_token(database, email="one@example.com") for _ in range(3)]
    # One user's three tokens (three slots) share the user's 3 a minute.
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for issued in tokens]
    refused = await gateway.get(ECHO, headers=proxy_headers(tokens[2].token))
    assert statuses == [200, 200, 200] and refused.status == 429
    assert (await error_of(refused))["message"].endswith("(user)")
    # Another user from the same address: the address's 5 a minute (4 spent) admit one more.
    stranger = await make_token(database, email="two@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(stranger.token))).status == 200
    refused = await gateway.get(ECHO, headers=proxy_headers(stranger.token))
    assert refused.status == 429 and (await error_of(refused))["message"].endswith("(ip)")


async def test_concurrent_uses_of_a_users_tokens_admit_exactly_the_users_limit(gateway_factory, database, cluster):
    """Windows in three slots, admitted one after another: racing requests never pass more than the
    user's limit, and a refused one's take-back never costs another its place."""
    gateway = await gateway_factory(**on_cluster(cluster, plan_limits_per_min={"free": 5, "premium": 5}))
    tokens = [await make_token(database, email="racer@example.com") for _ in range(3)]
    responses = await asyncio.gather(*(
        gateway.get(ECHO, headers=proxy_headers(tokens[n % 3].token, f"device-{n % 3}")) for n in range(21)))
    assert sorted(response.status for response in responses) == [200] * 5 + [429] * 16


async def test_a_revoked_token_and_key_are_refused_on_the_next_call(gateway_factory, mock_target, database, cluster):
    stack = await start(gateway_factory, mock_target, database, **on_cluster(cluster))
    issued = await make_token(database, email="gone@example.com")
    assert (await stack.gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    await stack.gateway.app[AUTHENTICATOR].forget(token_hash)
    response = await stack.gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401 and (await error_of(response))["code"] == "token_revoked"

    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)  # cached on the cluster
    key_id = await database.fetchval("SELECT id FROM api_keys WHERE prefix = $1", stack.key[:11])
    assert (await stack.gateway.delete(f"/api/v1/keys/{key_id}", headers=stack.user["headers"])).status == 200
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    store = reader(cluster)
    assert store.hget(f"tg:{{{token_hash.hex()}}}:rec", "state") == "revoked"
    assert store.hget(f"tg:{{{api_keys.digest(stack.key).hex()}}}:key", "state") == "revoked"
    store.close()
    assert len(await stack.charges()) == 1


class Load:
    """Steady traffic while a master dies: desktop requests of live tokens, one of a revoked token,
    and AI calls; what each got back."""

    def __init__(self, stack, live: list, revoked) -> None:
        self.stack, self.live, self.revoked = stack, live, revoked
        self.desk: Counter = Counter()
        self.refused: Counter = Counter()  # the revoked token's answers
        self.ai_ok = self.ai_failed = 0
        self.running = True
        self.hammering = False

    async def desktop(self, issued, device: str) -> None:
        while self.running:
            response = await self.stack.gateway.get(ECHO, headers=proxy_headers(issued.token, device))
            self.desk[response.status] += 1
            await response.release()
            if self.hammering:
                response = await self.stack.gateway.get(ECHO, headers=proxy_headers(self.revoked.token, "device-0"))
                self.refused[response.status] += 1
                await response.release()
            await asyncio.sleep(0.005)

    async def ai(self) -> None:
        client = self.stack.openai()
        while self.running:
            try:
                await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=2)
                self.ai_ok += 1
            except openai.APIError:
                self.ai_failed += 1
        await client.close()

    def start(self) -> list[asyncio.Task]:
        tasks = [asyncio.create_task(self.desktop(issued, f"device-{n}")) for n, issued in enumerate(self.live)]
        return tasks + [asyncio.create_task(self.ai())]


async def wait_for(check, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


async def test_a_master_killed_under_load_loses_no_money_and_lets_no_revoked_token_through(
        gateway_factory, mock_target, database, cluster):
    """The master of a revoked token's slot dies right after it took the revocation, before its
    replica had it (frozen): the promoted replica still holds the token's old "ok". With
    redis_revocation_replicas=1 the refusal stays queued (enforced from memory) until a replica
    confirms it, so the token is refused throughout; every acknowledged AI call is charged once."""
    stack = await start(gateway_factory, mock_target, database, credits=1000, **on_cluster(
        cluster, redis_revocation_replicas=1, redis_retry_after_s=0.2, credential_outbox_poll_s=0.2,
        plan_limits_per_min={"free": 0, "premium": 0, "enterprise": 0}, ip_limit_per_min=0))
    before = await stack.balance()
    live = [await make_token(database, email=f"live{n}@example.com") for n in range(3)]
    revoked = await make_token(database, email="revoked@example.com")
    record = f"tg:{{{access_tokens.digest(revoked.token).hex()}}}:rec"
    assert (await stack.gateway.get(ECHO, headers=proxy_headers(revoked.token, "device-0"))).status == 200
    master = cluster.master_of(record)
    replica = cluster.replica_of(master)
    await wait_for(lambda: asyncio.to_thread(lambda: cluster.reading(replica).hget(record, "state") == "ok"), 5,
                   "the replica never had the token's record")
    load = Load(stack, live, revoked)
    tasks = load.start()
    await asyncio.sleep(0.5)

    cluster.freeze(replica)  # the revocation reaches the master alone
    cluster.cut_off_replicas(master)
    token_hash = await access_tokens.revoke(database, revoked.id, now=dt.datetime.now(dt.timezone.utc))
    await stack.gateway.app[AUTHENTICATOR].forget(token_hash)
    assert cluster.node(master).hget(record, "state") == "revoked"
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 1  # not confirmed
    load.hammering = True
    await asyncio.sleep(0.3)
    cluster.kill(master)
    cluster.thaw(replica)
    await asyncio.to_thread(cluster.wait_failed_over, master)
    await asyncio.sleep(1.0)  # load on the promoted replica, which has no replica of its own yet:
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 1  # still unconfirmed
    cluster.start_node(master)  # back, as a replica: the queued refusal can be confirmed now
    await wait_for(lambda: database.fetchval("SELECT NOT EXISTS (SELECT 1 FROM credential_cache_outbox)"), 15,
                   "the refusal never left the queue")
    await asyncio.sleep(0.3)
    load.running = False
    await asyncio.gather(*tasks)

    assert set(load.refused) == {401}, load.refused
    assert set(load.desk) <= {200, 503} and load.desk[200] > 0, load.desk
    assert cluster.reading(replica).hget(record, "state") == "revoked"
    response = await stack.gateway.get(ECHO, headers=proxy_headers(revoked.token, "device-0"))
    assert response.status == 401 and (await error_of(response))["code"] == "token_revoked"
    for n, issued in enumerate(live):  # Redis serves the live tokens again
        assert (await stack.gateway.get(ECHO, headers=proxy_headers(issued.token, f"device-{n}"))).status == 200
    charges = await stack.charges()
    assert load.ai_ok > 0 and len(charges) == load.ai_ok, (load.ai_ok, load.ai_failed, len(charges))
    assert await stack.open_holds() == 0
    assert await stack.balance() == before - sum(charges)
