"""Backend connections hold up under concurrency (real Redis and the embedded one)."""

from __future__ import annotations

import asyncio

import pytest

from backends.redis import open_redis
from tests.support.services import RealServices

CONCURRENT_COMMANDS = 500  # well past the pool size: commands must wait, not fail


@pytest.mark.parametrize("backend", ["real", "embedded"])
async def test_redis_commands_past_the_pool_size_wait_instead_of_failing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = "memory://"
    if backend == "real":
        services: RealServices = request.getfixturevalue("real_services")
        url = services.redis_url
    async with open_redis(url, timeout_seconds=10, max_connections=20) as redis:

        async def slow_round_trip(number: int) -> str | None:
            # BLPOP on an empty list holds its connection for its whole timeout.
            await redis.blpop([f"plop:test:empty:{number}"], timeout=0.2)
            value = await redis.get(f"plop:test:missing:{number}")
            return None if value is None else str(value)

        results = await asyncio.gather(
            *(slow_round_trip(n) for n in range(CONCURRENT_COMMANDS)), return_exceptions=True
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    assert failures == []
