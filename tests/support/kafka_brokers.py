"""The three-broker Kafka cluster of ``scripts/services.sh start kafka-cluster``, and what
a test of a broker's failover asks of it: which broker leads the partition a key goes
to (and coordinates a consumer group), kill it, wait for a new leader, bring it back
and wait until it holds a copy again.

The suite's single-broker Kafka holds 9092 and 9093, the cluster's default ports; the
suite runs the cluster from ``CLUSTER_FIRST_PORT`` on (scripts/test.sh starts it there
too), so that both run side by side.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from devtools.processes import REPO
from devtools.services import services_script
from pubsub.kafka import bootstrap_servers
from tests.support.run_leftovers import run_topics

# The first of the three brokers: 19092, 19094, 19096 (controllers on the odd ports).
CLUSTER_FIRST_PORT = 19092
CLUSTER_ENV = {"PLOP_KAFKA_CLUSTER_PORT": str(CLUSTER_FIRST_PORT)}
# Three JVMs starting side by side on a loaded machine take tens of seconds; installing
# Kafka, longer.
CLUSTER_START_TIMEOUT_SECONDS = 600.0
# A dead broker is fenced after the cluster's session timeout (3 s,
# scripts/kafka/cluster-node.properties.in), then its partitions get new leaders.
FAILOVER_TIMEOUT_SECONDS = 30.0
# A restarted broker catches up with its partitions before it is in sync again.
REJOIN_TIMEOUT_SECONDS = 120.0
ADMIN_TIMEOUT_MS = 5_000
POLL_SECONDS = 0.1


def start_kafka_cluster() -> str:
    """Starts the cluster's missing brokers (a no-op when all three run); its
    ``PLOP_BROKER_URL``."""
    services_script(
        "start", "kafka-cluster", timeout=CLUSTER_START_TIMEOUT_SECONDS, env=CLUSTER_ENV
    )
    line = services_script("env", "kafka-cluster", env=CLUSTER_ENV).strip()
    return line.removeprefix("export PLOP_BROKER_URL=").strip("'\"")


def broker_port(node: int) -> int:
    """The client port of broker ``node`` (1 to 3), as the script lays them out."""
    return CLUSTER_FIRST_PORT + 2 * (node - 1)


def partition_of(key: str, partitions: int) -> int:
    """The partition a keyed record goes to: the Java client's murmur2, which aiokafka's
    default partitioner (Plop's producer) uses too."""
    return (int(murmur2(key.encode())) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1 while none
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


async def _admin(url: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(url), request_timeout_ms=ADMIN_TIMEOUT_MS
    )
    await admin.start()
    return admin


async def partition_state(url: str, topic: str, partition: int) -> PartitionState:
    """The partition's leader, copies and in-sync copies, as the cluster's metadata says."""
    admin = await _admin(url)
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for each in described["partitions"]:
        if each["partition"] == partition:
            return PartitionState(int(each["leader"]), tuple(each["replicas"]), tuple(each["isr"]))
    raise AssertionError(f"{topic} has no partition {partition}: {described!r}")


async def partitions_of(url: str, topic: str) -> int:
    admin = await _admin(url)
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described["partitions"])


async def coordinator_of(url: str, group: str) -> int:
    """The broker that coordinates the consumer group (holds its committed offsets)."""
    admin = await _admin(url)
    try:
        return int(await admin.find_coordinator(group))
    finally:
        await admin.close()


def _pid_file(node: int) -> Path:
    # Where scripts/services/lib.sh keeps run state: PLOP_SERVICES_DIR, or .services.
    root = Path(os.environ.get("PLOP_SERVICES_DIR") or REPO / ".services")
    return root / "kafka-cluster" / str(broker_port(node)) / "kafka.pid"


async def _refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


def broker_pid(node: int) -> int:
    """The pid of broker ``node``, from the script's pid file."""
    pid = int(_pid_file(node).read_text().strip())
    # A pid file can outlive its process and the pid be reused: only that broker's.
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"kafka.Kafka" in cmdline, f"pid {pid} is not a Kafka broker: {cmdline!r}"
    return pid


async def kill_broker(node: int) -> None:
    """kill -9 of broker ``node``; returns once its port no longer accepts connections."""
    os.kill(broker_pid(node), signal.SIGKILL)
    async with asyncio.timeout(FAILOVER_TIMEOUT_SECONDS):
        # Another process's state: there is no event to await but its port.
        while not await _refuses_connections(broker_port(node)):  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)


async def _state_when(
    url: str,
    topic: str,
    partition: int,
    done: Callable[[PartitionState], bool],
    within: float,
) -> PartitionState:
    """Polls the partition's state until ``done(state)``; admin requests that fail while
    the cluster elects are asked again."""
    async with asyncio.timeout(within):
        while True:
            try:
                state = await partition_state(url, topic, partition)
            except (KafkaError, OSError):
                state = None
            if state is not None and done(state):
                return state
            # The cluster's own state: there is no event to await but its metadata.
            await asyncio.sleep(POLL_SECONDS)


async def new_leader(url: str, topic: str, partition: int, old: int) -> PartitionState:
    """Waits until another broker than ``old`` leads the partition."""

    def elected(state: PartitionState) -> bool:
        return state.leader not in (old, -1)

    return await _state_when(url, topic, partition, elected, FAILOVER_TIMEOUT_SECONDS)


async def back_in_sync(url: str, topic: str, partition: int, node: int) -> PartitionState:
    """Waits until broker ``node`` (started again) holds an in-sync copy of the partition."""

    def rejoined(state: PartitionState) -> bool:
        return node in state.in_sync

    return await _state_when(url, topic, partition, rejoined, REJOIN_TIMEOUT_SECONDS)


async def delete_run_topics(url: str, prefix: str) -> None:
    """Deletes the topics of the run whose prefix this is from the cluster: left behind,
    they pile up over runs and slow every start of the brokers."""
    admin = await _admin(url)
    try:
        if topics := run_topics(await admin.list_topics(), prefix):
            await admin.delete_topics(topics)
    finally:
        await admin.close()
