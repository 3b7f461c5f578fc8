"""The key-value store for sessions, presence and rate limits: Redis, or fakeredis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from redis.asyncio import Redis

from errors import ConfigError


@asynccontextmanager
async def open_redis(url: str, timeout_seconds: float) -> AsyncIterator[Redis]:
    """A Redis client for the URL, closed when the block ends."""
    scheme = urlsplit(url).scheme
    client: Redis
    if scheme == "memory":
        from fakeredis import FakeAsyncRedis

        client = FakeAsyncRedis(decode_responses=True)
    elif scheme in ("redis", "rediss", "unix"):
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=30,
        )
    else:
        raise ConfigError(f"PLOP_REDIS_URL has an unsupported scheme: {url!r}")
    try:
        yield client
    finally:
        await client.aclose()
