"""Foreign failures, named once: what a store outage or an upstream failure looks like, and the
one table that turns an upstream failure into the gateway's answer (both forwarders use it)."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import redis.exceptions

from gateway.core.errors import GatewayError, UpstreamBroken, UpstreamTimeout, UpstreamUnreachable

# A Redis Cluster that cannot serve a slot now: no reachable node, a slot without a master while
# a failover runs (CLUSTERDOWN, TRYAGAIN, slots not covered). redis-py raises its own
# RedisClusterException when it cannot build the slot map at all (decision 0023). NOSCRIPT reaches
# the caller only when a script redis-py has just loaded is missing again: the node answering is
# not the one loaded (a slot moving between masters, a node restarting empty).
CLUSTER_FAILURES = (redis.exceptions.ClusterError, redis.exceptions.TryAgainError,
                    redis.exceptions.RedisClusterException, redis.exceptions.NoScriptError)
# Redis unreachable, or reachable but unable to serve (a read-only replica after a failover, out
# of memory, loading its data, a cluster slot between masters): all outages, answered by the
# PostgreSQL fallback.
REDIS_FAILURES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
                  redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
                  redis.exceptions.BusyLoadingError, redis.exceptions.MasterDownError, *CLUSTER_FAILURES)
# Anything PostgreSQL or its driver can raise when it cannot do the work: background tasks log it
# and try again later; the credential fallback answers 503 rather than vouch for anyone.
POSTGRES_FAILURES = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
# Failures that mean "a store is unreachable", answered with one 503 by the middleware: PostgreSQL
# refusing or losing connections (class 08), an operator's intervention such as a restart,
# start-up or recovery (class 57, which also holds query cancellation), a lack of resources
# ("too many clients", class 53), a read-only standby after a failover; the driver's own
# connection state; Redis unreachable; the network. A deadlock or serialization failure (class 40)
# rolled the transaction back whole: nothing was written, and a retry may pass. A system error
# (class 58, an I/O error) failed the transaction whole too.
STORE_FAILURES = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
                  asyncpg.exceptions.TransactionRollbackError, asyncpg.exceptions.PostgresSystemError,
                  asyncpg.exceptions.InsufficientResourcesError, asyncpg.exceptions.ReadOnlySQLTransactionError,
                  asyncpg.InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                  *CLUSTER_FAILURES, OSError, asyncio.TimeoutError)

# Most specific first: a read timeout is a ClientError too, a refused connection an OSError.
UPSTREAM_FAILURES: tuple[tuple[type[BaseException], type[GatewayError], str], ...] = (
    (aiohttp.ServerTimeoutError, UpstreamTimeout, "did not answer in time"),
    (asyncio.TimeoutError, UpstreamTimeout, "did not answer in time"),
    (aiohttp.ClientConnectorError, UpstreamUnreachable, "is unreachable"),
    (aiohttp.ServerDisconnectedError, UpstreamBroken, "closed the connection"),
    (aiohttp.ClientPayloadError, UpstreamBroken, "broke off its answer"),
    (aiohttp.ClientError, UpstreamUnreachable, "is unreachable"),
    (OSError, UpstreamUnreachable, "is unreachable"),
)


def upstream_error(error: BaseException, upstream: str) -> GatewayError:
    """The gateway's answer to a failure talking to `upstream` (e.g. "target", "openai")."""
    if isinstance(error, GatewayError):
        return error
    for kind, answer, what in UPSTREAM_FAILURES:
        if isinstance(error, kind):
            return answer(f"the {upstream} upstream {what}")
    return UpstreamUnreachable(f"the {upstream} upstream failed: {type(error).__name__}")
