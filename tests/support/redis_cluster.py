"""The Redis Cluster of ``scripts/services.sh start redis-cluster``, and what a test
of a failover asks of it: which master holds a key, kill it, wait for its replica
to take over, bring it back."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backends.redis_cluster import cluster_nodes
from backends.redis_slots import slot_of
from devtools.services import services_script

# Starting six nodes and creating the cluster takes seconds; installing Redis, longer.
CLUSTER_START_TIMEOUT_SECONDS = 300.0
# A master's death is noticed after the nodes' timeout (2 s, scripts/services/
# redis_cluster.sh), then its replica is elected: seconds, bounded here generously.
FAILOVER_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.1


def start_redis_cluster() -> str:
    """Starts the cluster (a no-op when it runs); its ``PLOP_REDIS_URL``."""
    services_script("start", "redis-cluster", timeout=CLUSTER_START_TIMEOUT_SECONDS)
    line = services_script("env", "redis-cluster").strip()
    return line.removeprefix("export PLOP_REDIS_URL=").strip("'\"")


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    port: int
    master: bool
    failed: bool
    slots: tuple[tuple[int, int], ...]

    def holds(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _node(address: str, fields: dict[str, Any]) -> ClusterNode:
    """One node of redis-py's parsed CLUSTER NODES."""
    flags = str(fields["flags"]).split(",")
    slots = tuple((int(each[0]), int(each[-1])) for each in cast(list[list[str]], fields["slots"]))
    failed = "fail" in flags or "fail?" in flags
    port = int(address.rpartition(":")[2])
    return ClusterNode(str(fields["node_id"]), port, "master" in flags, failed, slots)


async def node_client(port: int) -> Redis:
    return Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=3)


async def cluster_view(url: str) -> list[ClusterNode]:
    """CLUSTER NODES as the first node of the URL that answers sees it."""
    for _, port in cluster_nodes(url):
        client = await node_client(port)
        try:
            nodes = cast(dict[str, dict[str, Any]], await client.cluster("NODES"))
        except (RedisError, OSError):
            continue
        finally:
            await client.aclose()
        return [_node(address, fields) for address, fields in nodes.items()]
    raise AssertionError(f"no node of {url} answers")


async def master_of(url: str, key: str) -> ClusterNode:
    """The healthy master that holds the key's slot."""
    slot = slot_of(key)
    for node in await cluster_view(url):
        if node.master and not node.failed and node.holds(slot):
            return node
    raise AssertionError(f"no healthy master holds slot {slot}")


async def replicated(port: int) -> int:
    """Waits until the master's replica acknowledged every write so far (Redis's WAIT);
    how many replicas did."""
    client = await node_client(port)
    try:
        return int(await client.wait(1, 5_000))
    finally:
        await client.aclose()


async def kill_node(port: int) -> None:
    """kill -9 of the node on the port; returns once it no longer accepts connections."""
    client = await node_client(port)
    try:
        pid = int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(FAILOVER_TIMEOUT_SECONDS):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(POLL_SECONDS)


async def promoted_in_place_of(url: str, old: ClusterNode, key: str) -> ClusterNode:
    """Waits until another node is the healthy master of the key's slot (the cluster
    elects it by itself; there is no event to await but its view of itself)."""
    async with asyncio.timeout(FAILOVER_TIMEOUT_SECONDS):
        while True:
            try:
                new = await master_of(url, key)
            except AssertionError:
                new = old
            if new.node_id != old.node_id:
                return new
            await asyncio.sleep(POLL_SECONDS)


async def role_of(port: int) -> str:
    client = await node_client(port)
    try:
        return str((await client.role())[0])
    finally:
        await client.aclose()


async def becomes_replica(port: int) -> None:
    """Waits until the node on the port (a former master, started again) has learnt
    from the others that its slots moved on, and serves as a replica."""
    async with asyncio.timeout(FAILOVER_TIMEOUT_SECONDS):
        # Another process's state: there is no event to await, only its answer.
        while await role_of(port) != "slave":  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
