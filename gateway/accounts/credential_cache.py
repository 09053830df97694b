"""Refusals that must reach the credential cache: queued in PostgreSQL, pushed to Redis, honoured meanwhile.

A revocation (or a disabled user) is queued by a database trigger in the same transaction as the
change itself (migration 0008), whoever makes it: an API handler, the CLI, an operator's SQL.
Each gateway pushes the queue to Redis — at once when PostgreSQL notifies it, and every
`credential_outbox_poll_s` as a safety net — and deletes what Redis took. While a refusal is
queued but not yet in Redis (Redis frozen, down, or just back), the gateway refuses that
credential from memory, so a stale cached "ok" can never serve it again (decision 0015).

With replicas behind Redis (a cluster's, Sentinel's), a refusal the master took can still die with
it before it reached a replica, and the promoted replica would serve the stale "ok". With
`redis_revocation_replicas` set, the push asks each master it wrote to to WAIT for that many
replicas; a refusal counts as in Redis, and leaves the queue, only then (decision 0023).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from redis.asyncio.cluster import RedisCluster

from gateway.core.failures import POSTGRES_FAILURES, REDIS_FAILURES
from gateway.core.redis_client import RedisClient

log = logging.getLogger(__name__)

CHANNEL = "credential_outbox"
BATCH_MAX = 500
# Rows pushed per call at most (BATCH_MAX each): a huge queue is worked off over several wake-ups.
BATCHES_PER_PUSH_MAX = 20

SELECT_QUEUE = """
SELECT id, kind, credential_hash, state, token_hash FROM credential_cache_outbox ORDER BY id LIMIT $1"""
DELETE_PUSHED = "DELETE FROM credential_cache_outbox WHERE id = ANY($1::bigint[])"
ANY_QUEUED = "SELECT EXISTS (SELECT 1 FROM credential_cache_outbox)"
LOCK_QUEUE = "SELECT pg_advisory_xact_lock(hashtext('credential_cache_outbox'))"


def token_record_key(token_hash: bytes) -> str:
    # The hash tag keeps a credential's keys in one Redis Cluster slot.
    return f"tg:{{{token_hash.hex()}}}:rec"


def api_key_record_key(key_hash: bytes) -> str:
    return f"tg:{{{key_hash.hex()}}}:key"


def browser_session_key(token_hash: bytes, session_hash: bytes) -> str:
    # Tagged with its token's hash: resolved in the token's own script call, in the token's slot.
    return f"tg:{{{token_hash.hex()}}}:bs:{session_hash.hex()}"


def record_key(row: asyncpg.Record) -> str:
    """The Redis key an outbox row changes."""
    credential_hash = bytes(row["credential_hash"])
    if row["kind"] == "browser_session":
        return browser_session_key(bytes(row["token_hash"]), credential_hash)
    return RECORD_KEYS[row["kind"]](credential_hash)


RECORD_KEYS = {"token": token_record_key, "api_key": api_key_record_key}


class NotReplicated(Exception):
    """A master took the refusals but fewer replicas than required confirmed them in time."""


class CredentialOutbox:
    """Pushes queued refusals to Redis; until a refusal is there, `refusal()` answers for it."""

    def __init__(self, redis: RedisClient, tombstone_ttl_s: int, replicas: int = 0, replica_wait_ms: int = 0) -> None:
        self.redis = redis
        # Replicas of its master that must hold a refusal before it leaves the queue (0 = the
        # master's word), and how long a push waits for them.
        self.replicas = replicas
        self.replica_wait_ms = replica_wait_ms
        # A tombstone outlives any record it replaces (records live at most auth_cache_ttl_s).
        self.tombstone_ttl_s = tombstone_ttl_s
        # credential hash (a token's, an API key's, a browser session's) -> 'revoked' | 'disabled'
        self.pending: dict[bytes, str] = {}
        self.lock = asyncio.Lock()

    def refusal(self, credential_hash: bytes) -> str | None:
        """The queued refusal of this credential, if any (a dict lookup only while one is queued)."""
        return self.pending.get(credential_hash) if self.pending else None

    async def push(self, connection: asyncpg.Connection) -> bool:
        """Push the queue to Redis; True when it is empty afterwards. Raises on PostgreSQL failures.

        Pushes are serialised across every process by an advisory lock, so the queue reaches
        Redis in its own order (a 'refresh' after a 'disabled' is never overtaken by it)."""
        async with self.lock:
            if not await connection.fetchval(ANY_QUEUED):
                self.pending.clear()
                return True
            for _ in range(BATCHES_PER_PUSH_MAX):
                async with connection.transaction():
                    await connection.execute(LOCK_QUEUE)
                    rows = await connection.fetch(SELECT_QUEUE, BATCH_MAX)
                    if not rows:
                        return True
                    self._remember(rows)
                    try:
                        await self._write(rows)
                    except (*REDIS_FAILURES, NotReplicated) as error:
                        log.warning("credential cache not updated (%s): %d refusal(s) kept queued and "
                                    "enforced from memory", type(error).__name__, len(rows))
                        return False
                    await connection.execute(DELETE_PUSHED, [row["id"] for row in rows])
                for row in rows:
                    self.pending.pop(bytes(row["credential_hash"]), None)
            return False

    async def push_from(self, pool: asyncpg.Pool) -> bool:
        """After a handler's own change: push at once; failures leave the queue to the background task."""
        try:
            async with pool.acquire() as connection:
                return await self.push(connection)
        except POSTGRES_FAILURES as error:
            log.warning("credential outbox not read (%s); the background task retries", type(error).__name__)
            return False

    def _remember(self, rows: list) -> None:
        for row in rows:  # in queue order: a later 'refresh' lifts an earlier 'disabled'
            credential_hash = bytes(row["credential_hash"])
            if row["state"] == "refresh":
                self.pending.pop(credential_hash, None)
            else:
                self.pending[credential_hash] = row["state"]

    async def _write(self, rows: list) -> None:
        # No MULTI: each credential's key lives in its own Redis Cluster slot.
        keys = [record_key(row) for row in rows]
        async with self.redis.pipeline(transaction=False) as pipe:
            for row, key in zip(rows, keys):
                pipe.delete(key)
                if row["state"] != "refresh":
                    pipe.hset(key, mapping={"state": row["state"]})
                    pipe.expire(key, self.tombstone_ttl_s)
            masters = await self._wait_for_replicas(pipe, keys)
            answers = await pipe.execute()
        if self.replicas and any(int(acked) < self.replicas for acked in answers[len(answers) - len(masters):]):
            raise NotReplicated(f"fewer than {self.replicas} replica(s) confirmed the refusals")
        if self.replicas and isinstance(self.redis, RedisCluster) and any(
                self._master(key).name not in masters for key in keys):
            raise NotReplicated("a slot changed masters during the push")  # a WAIT may not cover it

    async def _wait_for_replicas(self, pipe, keys: list[str]) -> set[str]:
        """Queue one WAIT on each master the pipeline writes to, after its writes (a WAIT covers the
        writes made on its own connection: the pipeline sends each master's commands on one).
        The names of those masters."""
        if not self.replicas:
            return set()
        if not isinstance(self.redis, RedisCluster):
            pipe.execute_command("WAIT", self.replicas, self.replica_wait_ms)
            return {"single"}
        await self.redis.initialize()  # the slot map (a no-op once known)
        nodes = {node.name: node for node in (self._master(key) for key in keys)}
        for node in nodes.values():
            pipe.execute_command("WAIT", self.replicas, self.replica_wait_ms, target_nodes=node)
        return set(nodes)

    def _master(self, key: str):
        """The cluster node that serves the key's slot now."""
        assert isinstance(self.redis, RedisCluster)
        node = self.redis.get_node_from_key(key)
        if node is None:
            raise NotReplicated(f"no master serves {key} now")
        return node

    async def run(self, database_url: str, interval_s: float, connect_timeout_s: float) -> None:
        """Listen for the queue's notifications on a connection of its own; push on each, and
        every interval_s regardless (a missed notification, Redis coming back)."""
        while True:
            try:
                connection = await asyncpg.connect(database_url, timeout=connect_timeout_s)
            except POSTGRES_FAILURES as error:
                log.warning("credential outbox listener cannot connect: %s", type(error).__name__)
                await asyncio.sleep(interval_s)
                continue
            try:
                wake = asyncio.Event()
                await connection.add_listener(CHANNEL, lambda *_: wake.set())
                while True:
                    wake.clear()
                    await self.push(connection)
                    try:
                        await asyncio.wait_for(wake.wait(), interval_s)
                    except asyncio.TimeoutError:
                        pass
            except POSTGRES_FAILURES as error:
                log.warning("credential outbox listener lost PostgreSQL: %s", type(error).__name__)
                await asyncio.sleep(interval_s)
            finally:
                await _close_quietly(connection)


async def _close_quietly(connection: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(connection.close(), 1.0)
    except POSTGRES_FAILURES:
        connection.terminate()
    except asyncio.CancelledError:
        connection.terminate()
        raise
