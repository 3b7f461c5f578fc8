"""Redis Cluster: ``redis+cluster://[user:password@]host:port[,host:port...]``.

The hosts are only where the client starts: it asks any of them for the cluster's
map of slots and follows it (``MOVED``, a failover) from then on. Every command of
Plop's keeps its keys in one hash slot (see ``backends.redis_slots``), so nothing
here has to split a command across nodes; a pipeline is split by the client itself,
one batch per node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errors import ConfigError

CLUSTER_SCHEME = "redis+cluster"
# A master that dies is replaced by its replica once the other masters agree it is
# gone (the nodes' cluster-node-timeout, then an election: a few seconds). A command
# meanwhile is retried with a growing pause, the slot map read again between tries,
# for about as long as that takes; past it, the caller answers UNAVAILABLE.
FAILOVER_RETRIES = 6
FAILOVER_FIRST_PAUSE_SECONDS = 0.1
FAILOVER_MAX_PAUSE_SECONDS = 1.0


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The start-up nodes a ``redis+cluster://`` URL names, in its order."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"PLOP_REDIS_URL names a cluster node that is not host:port: {part!r}"
            )
        nodes.append((host.strip("[]"), int(port)))
    return nodes


class WaitingRedisCluster(RedisCluster):
    """A cluster client whose commands wait for a free connection.

    redis-py's cluster client refuses a command at once (``MaxConnectionsError``)
    when its node's connections are all busy, which under load fails requests that
    only had to wait a moment; the single-server client here waits (a blocking
    pool). So does this one: at most ``max_connections`` commands and pipelines are
    in flight at once, each holding at most one connection per node, and the others
    wait their turn up to the timeout, then fail as a connection error (UNAVAILABLE).
    """

    def __init__(self, *, max_connections: int, wait_seconds: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._in_flight = asyncio.Semaphore(max_connections)
        self._wait_seconds = wait_seconds

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Holds one of the client's turns (a connection on each node) for the block."""
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._in_flight.acquire()
        except TimeoutError as exc:
            raise RedisConnectionError("no Redis Cluster connection free in time") from exc
        try:
            yield
        finally:
            self._in_flight.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: bool | None = None, shard_hint: Any = None) -> ClusterPipeline:
        # redis-py declares an attribute abstract that its own pipeline never sets.
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    """A pipeline that takes one of its client's turns while it is sent."""

    def __init__(self, client: WaitingRedisCluster, transaction: bool | None) -> None:
        super().__init__(client, transaction)
        self._waiting_client = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self._waiting_client.turn():
            return await super().execute(raise_on_error, allow_redirections)


def open_cluster(url: str, timeout_seconds: float, max_connections: int) -> RedisCluster:
    """A cluster client for the URL (connections are made at the first command)."""
    split = urlsplit(url)
    credentials = split.netloc.rpartition("@")[0]
    username, _, password = credentials.partition(":")
    if split.path not in ("", "/", "/0"):
        # Redis Cluster has database 0 only.
        raise ConfigError(f"PLOP_REDIS_URL names a database, which a cluster has not: {url!r}")
    return WaitingRedisCluster(
        wait_seconds=timeout_seconds,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(username) or None,
        password=unquote(password) or None,
        decode_responses=True,
        # Per node. Round trips to a cluster go uncounted in /metrics: the cluster
        # client makes its connections with its own class.
        max_connections=max_connections,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
        retry=Retry(
            ExponentialWithJitterBackoff(
                base=FAILOVER_FIRST_PAUSE_SECONDS, cap=FAILOVER_MAX_PAUSE_SECONDS
            ),
            FAILOVER_RETRIES,
        ),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
