"""Redis Cluster: ``redis+cluster://[user:password@]host:port[,host:port...]``.

The hosts are only where the client starts: it asks any of them for the cluster's
map of slots and follows it (``MOVED``, a failover) from then on. Every command of
Plop's keeps its keys in one hash slot (see ``backends.redis_slots``), so nothing
here has to split a command across nodes; a pipeline is split by the client itself,
one batch per node.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
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


def open_cluster(url: str, timeout_seconds: float, max_connections: int) -> RedisCluster:
    """A cluster client for the URL (connections are made at the first command)."""
    split = urlsplit(url)
    credentials = split.netloc.rpartition("@")[0]
    username, _, password = credentials.partition(":")
    if split.path not in ("", "/", "/0"):
        # Redis Cluster has database 0 only.
        raise ConfigError(f"PLOP_REDIS_URL names a database, which a cluster has not: {url!r}")
    return RedisCluster(
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
