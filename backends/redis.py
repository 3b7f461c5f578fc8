"""The key-value store for sessions, presence and rate limits: Redis, Redis Cluster,
or fakeredis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from backends.redis_cluster import CLUSTER_SCHEME, open_cluster
from errors import BackendUnreachable, ConfigError, describe
from observability.backend_commands import CountedRedisConnection

DEFAULT_MAX_CONNECTIONS = 200

KeyValueStore = Redis | RedisCluster
"""What every caller of Redis holds: one server or a cluster, the same commands; a
script's or a multi-key command's keys are always in one hash slot."""


@asynccontextmanager
async def open_redis(
    url: str, timeout_seconds: float, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> AsyncIterator[KeyValueStore]:
    """A Redis client for the URL, closed when the block ends.

    The pool blocks (up to the timeout) when all its connections are busy: redis-py's
    default pool raises at once past 100 concurrent commands, which under load
    refused sockets and failed sends that only had to wait a moment.
    """
    scheme = urlsplit(url).scheme
    client: KeyValueStore
    if scheme == "memory":
        from fakeredis import FakeAsyncRedis

        client = FakeAsyncRedis(
            decode_responses=True,
            connection_pool_class=BlockingConnectionPool,
            max_connections=max_connections,
            timeout=timeout_seconds,
        )
    elif scheme in ("redis", "rediss", "unix"):
        pool = BlockingConnectionPool.from_url(
            url,
            # Round trips counted for /metrics (rediss:// and unix:// URLs pick their own
            # connection class and go uncounted).
            connection_class=CountedRedisConnection,
            max_connections=max_connections,
            timeout=timeout_seconds,
            decode_responses=True,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=30,
            # A pooled connection that died with a Redis restart fails its next command
            # at once: that command is sent again, once, on a fresh connection, instead
            # of answering UNAVAILABLE when Redis is back.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        client = Redis(connection_pool=pool)
    elif scheme == CLUSTER_SCHEME:
        client = open_cluster(url, timeout_seconds, max_connections)
    else:
        raise ConfigError(f"PLOP_REDIS_URL has an unsupported scheme: {url!r}")
    try:
        # Connections are made lazily: ask once, so that a Redis that is not there
        # stops the start instead of failing the first requests.
        try:
            await client.ping()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise BackendUnreachable("redis", url, describe(exc)) from exc
        yield client
    finally:
        await client.aclose()
