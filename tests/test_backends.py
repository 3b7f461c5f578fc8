"""Backend connections hold up under concurrency (real Redis, the real MongoDB-protocol
store and the embedded ones)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from beanie import PydanticObjectId

from backends.mongo import open_database
from backends.redis import open_redis
from backends.redis_cluster import cluster_nodes, open_cluster
from errors import ConfigError
from models import RoomProgressDoc
from tests.support.redis_cluster import start_redis_cluster
from tests.support.services import RealServices

CONCURRENT_COMMANDS = 500  # well past the pool size: commands must wait, not fail


@pytest.mark.parametrize("backend", ["real", "cluster", "embedded"])
async def test_redis_commands_past_the_pool_size_wait_instead_of_failing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = "memory://"
    if backend == "real":
        services: RealServices = request.getfixturevalue("real_services")
        url = services.redis_url
    elif backend == "cluster":
        url = await asyncio.to_thread(start_redis_cluster)
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


def _store_pool_size() -> int:
    client = RoomProgressDoc.get_pymongo_collection().database.client
    return int(client.options.pool_options.max_pool_size)


async def test_store_commands_past_the_connection_cap_wait_instead_of_failing(
    real_services: RealServices,
) -> None:
    # Updates are what FerretDB 1.x serves on two of its own connections each: past
    # its pool they would deadlock it, below Plop's cap they queue in Plop.
    url = real_services.mongo_url_for(f"plop_pool_{secrets.token_hex(4)}")
    async with open_database(url, timeout_seconds=10, max_connections=4):
        assert _store_pool_size() == 4
        rooms = [RoomProgressDoc(id=PydanticObjectId()) for _ in range(8)]
        for room in rooms:
            await room.insert()

        async def move(number: int) -> None:
            room = rooms[number % len(rooms)]
            await RoomProgressDoc.find_one(RoomProgressDoc.id == room.id).update(
                {"$max": {"seq_hint": number}}
            )

        results = await asyncio.gather(
            *(move(n) for n in range(CONCURRENT_COMMANDS)), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        assert failures == []
        stored = await RoomProgressDoc.find({"_id": {"$in": [r.id for r in rooms]}}).to_list()
        # Each room's hint is the largest number sent to it, whatever the interleaving
        # (on FerretDB an update is a read and a write back, so only the largest of a
        # room's last writers is sure; every room moved past its first).
        assert all(room.seq_hint >= len(rooms) for room in stored), stored


async def test_a_pool_size_in_the_store_url_wins_over_the_setting(
    real_services: RealServices,
) -> None:
    url = real_services.mongo_url_for(f"plop_pool_{secrets.token_hex(4)}") + "?maxPoolSize=7"
    async with open_database(url, timeout_seconds=10, max_connections=4):
        assert _store_pool_size() == 7


def test_a_cluster_url_names_its_nodes_and_refuses_what_a_cluster_has_not() -> None:
    assert cluster_nodes("redis+cluster://u:p@10.0.0.1:7001,[::1]:7002") == [
        ("10.0.0.1", 7001),
        ("::1", 7002),
    ]
    for unusable in ("redis+cluster://10.0.0.1", "redis+cluster://10.0.0.1:7001,:7002"):
        with pytest.raises(ConfigError, match="not host:port"):
            cluster_nodes(unusable)
    with pytest.raises(ConfigError, match="database"):
        open_cluster("redis+cluster://10.0.0.1:7001/3", timeout_seconds=1, max_connections=1)
