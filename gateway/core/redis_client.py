"""The one place a Redis client is made: a single Redis (or a managed primary endpoint) by default,
a Redis Cluster when TOLLGATE_REDIS_CLUSTER is on (decision 0023).

Every script call names keys of one hash slot only (`{tag}` hash tags), so the same calls run on
both; redis-py's cluster client routes each call by its keys and follows the cluster's failovers.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from gateway.core.config import Settings
from gateway.core.failures import REDIS_FAILURES

log = logging.getLogger(__name__)

RedisClient: TypeAlias = redis_asyncio.Redis | RedisCluster
# A cluster call retries this often (refreshing the slot map each time) before it counts as an
# outage: enough to ride out a MOVED after a failover, short enough that a request never hangs on
# a dead master for longer than the fallback would take to answer.
CLUSTER_RETRIES = 3
CLUSTER_BACKOFF_CAP_S = 0.25
CLUSTER_BACKOFF_BASE_S = 0.05


class Cluster(RedisCluster):
    """redis-py's cluster client, whose connection failures are all Redis failures: while it
    refreshes its slot map (a failover) it can close a connection another command is using, and that
    command then fails inside the transport (AttributeError, TypeError) instead of with a
    ConnectionError (redis-py issue 4287) — an outage to the gateway, never a 500."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, TypeError) as error:
            raise redis.exceptions.ConnectionError(f"redis cluster connection lost: {error!r}") from error


def connect(settings: Settings, **options: Any) -> RedisClient:
    """A client for settings.redis_url: `options` are redis-py's connection options (per node on a
    cluster). Nothing connects until the first command."""
    options.setdefault("socket_timeout", settings.redis_timeout_s)
    options.setdefault("socket_connect_timeout", settings.redis_timeout_s)
    if not settings.redis_cluster:
        return redis_asyncio.from_url(settings.redis_url.value, **options)
    retry = Retry(ExponentialBackoff(cap=CLUSTER_BACKOFF_CAP_S, base=CLUSTER_BACKOFF_BASE_S), CLUSTER_RETRIES)
    return Cluster.from_url(settings.redis_url.value, retry=retry, **options)


async def warm_up(client: RedisClient) -> None:
    """Learn a cluster's slot map before the first requests: left to them, the first burst of
    requests would all wait on it, and redis-py's first connections race with its set-up. A
    cluster that does not answer yet is learnt later (the gateway starts without Redis too)."""
    if not isinstance(client, RedisCluster):
        return
    try:
        await client.initialize()
    except REDIS_FAILURES as error:
        log.warning("redis cluster not reachable at start (%s); its slot map is learnt later", type(error).__name__)
