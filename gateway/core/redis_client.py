"""The one place a Redis client is made: a single Redis (or a managed primary endpoint) by default,
a Redis Cluster when TOLLGATE_REDIS_CLUSTER is on (decision 0023).

Every script call names keys of one hash slot only (`{tag}` hash tags), so the same calls run on
both; redis-py's cluster client routes each call by its keys and follows the cluster's failovers.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as redis_asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from gateway.core.config import Settings

RedisClient: TypeAlias = redis_asyncio.Redis | RedisCluster
# A cluster call retries this often (refreshing the slot map each time) before it counts as an
# outage: enough to ride out a MOVED after a failover, short enough that a request never hangs on
# a dead master for longer than the fallback would take to answer.
CLUSTER_RETRIES = 3
CLUSTER_BACKOFF_CAP_S = 0.25
CLUSTER_BACKOFF_BASE_S = 0.05


def connect(settings: Settings, **options: Any) -> RedisClient:
    """A client for settings.redis_url: `options` are redis-py's connection options (per node on a
    cluster). Nothing connects until the first command."""
    options.setdefault("socket_timeout", settings.redis_timeout_s)
    options.setdefault("socket_connect_timeout", settings.redis_timeout_s)
    if not settings.redis_cluster:
        return redis_asyncio.from_url(settings.redis_url.value, **options)
    retry = Retry(ExponentialBackoff(cap=CLUSTER_BACKOFF_CAP_S, base=CLUSTER_BACKOFF_BASE_S), CLUSTER_RETRIES)
    return RedisCluster.from_url(settings.redis_url.value, retry=retry, **options)
