"""Plop on a three-broker Kafka cluster (``scripts/services.sh start kafka-cluster``), its
topics copied to all three brokers with ``min.insync.replicas`` 2, with the real Redis
and FerretDB: two instances, each running the push worker in one group; the broker that
leads a busy room's partition (and coordinates the push group) is killed mid-stream and
started again, and every message still reaches every subscriber once, in order, is
stored once and pushed once.

The cluster is this file's alone, on ports of its own (tests/support/kafka_brokers.py),
so its failover (marked ``kafka_failover``) runs beside the other files' tests, in the
suite's parallel run; it is the file's last test, on the same two servers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from gql.transport.exceptions import TransportQueryError

from pubsub.kafka import MIN_INSYNC_REPLICAS, bootstrap_servers
from pubsub.topics import ALL_TOPICS, ROOM_EVENTS
from tests.support.chat import (
    CREATE_GROUP,
    HISTORY,
    MESSAGE_ADDED,
    REGISTER_DEVICE,
    as_user,
    befriend_all,
    send,
)
from tests.support.clients import (
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    Subscription,
    call,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.kafka_brokers import (
    PartitionState,
    back_in_sync,
    coordinator_of,
    delete_run_topics,
    kill_broker,
    new_leader,
    partition_of,
    partition_state,
    partitions_of,
    start_kafka_cluster,
)
from tests.support.push_receiver import WEBHOOK_SECRET, PushReceiver, running_push_receiver
from tests.support.server import ServerProcess

BROKERS = 3
CLUSTER_SETTINGS = {
    "PLOP_KAFKA_REPLICATION_FACTOR": str(BROKERS),
    "PLOP_KAFKA_MIN_INSYNC_REPLICAS": "2",
}
EVENTS = """
subscription {
  events { token payload { __typename ... on MessageAdded { message { roomId seq text } } } }
}
"""
# Paced sends through both instances: the broker dies after KILL_AFTER of them, and
# the rest go on while its partitions get new leaders and while it starts again; a few
# more are sent once it holds its copies again.
SENDS, KILL_AFTER, AFTER_REJOIN = 40, 12, 4
PACE_SECONDS = 0.25
# A send that answers UNAVAILABLE (a backend unreachable for a moment) is retried with
# its clientId, for this long at most.
RETRY_WITHIN_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.2
# A group room's partition is led by the push group's coordinator for about one room in
# three; this many tries all miss with odds of about one in 200,000.
ROOM_TRIES = 30
# Everything the failover takes: the kill, the election, the broker's start and catch-up.
FAILOVER_SECONDS = 240.0
# After the last send, what was held up by the election reaches everyone within this.
DELIVERY_SECONDS = 60.0
# Each test's bound, above the suite's 180 s: the first one's setup may start the three
# brokers, and the failover starts one again, each tens of seconds on a loaded machine.
pytestmark = pytest.mark.timeout(FAILOVER_SECONDS + 2 * DELIVERY_SECONDS + 60)


@dataclass(frozen=True)
class ClusterRun:
    a: ServerProcess
    b: ServerProcess
    url: str
    topic_prefix: str
    push_group: str

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster_url() -> str:
    return await asyncio.to_thread(start_kafka_cluster)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("push-failover")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def on_cluster(
    real_env: dict[str, str], cluster_url: str, receiver: PushReceiver
) -> AsyncIterator[ClusterRun]:
    """Two instances whose broker is the cluster, each running the push worker."""
    group = f"kafka-failover-{uuid.uuid4().hex[:8]}.push"
    env = {
        **real_env,
        **CLUSTER_SETTINGS,
        "PLOP_BROKER_URL": cluster_url,
        "PLOP_PUSH_WEBHOOK_URL": f"{receiver.base_url}/webhook",
        "PLOP_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLOP_PUSH_GROUP": group,
        "PLOP_PUSH_BACKOFF_BASE_SECONDS": "0.2",
        "PLOP_PUSH_BACKOFF_MAX_SECONDS": "1",
    }
    servers = [
        ServerProcess(f"kafka-cluster-{name}", {**env, "PLOP_INSTANCE_ID": f"kafka-cluster-{name}"})
        for name in "ab"
    ]
    await asyncio.gather(*(server.start() for server in servers))
    prefix = real_env["PLOP_TOPIC_PREFIX"]
    yield ClusterRun(servers[0], servers[1], cluster_url, prefix, group)
    await asyncio.gather(*(server.stop() for server in servers))
    await delete_run_topics(cluster_url, prefix)


async def test_plops_topics_are_copied_to_every_broker(on_cluster: ClusterRun) -> None:
    """Each partition of each topic Plop created has a copy on each of the three brokers,
    all in sync, and a write counts once two of them hold it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(on_cluster.url))
    await admin.start()
    try:
        topics = [on_cluster.topic(name) for name in ALL_TOPICS]
        for described in await admin.describe_topics(topics):
            assert described["partitions"], described
            for partition in described["partitions"]:
                assert sorted(partition["replicas"]) == [1, 2, 3], described
                assert sorted(partition["isr"]) == [1, 2, 3], described
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, topic, configs={MIN_INSYNC_REPLICAS: None})
            for topic in topics
        ]
        settings = {
            resource["resource_name"]: entry["config_value"]
            for response in await admin.describe_configs(resources)
            for resource in response.to_object()["resources"]
            for entry in resource["config_entries"]
            if entry["config_names"] == MIN_INSYNC_REPLICAS
        }
        assert settings == dict.fromkeys(topics, "2")
    finally:
        await admin.close()


async def room_led_by_the_push_coordinator(
    run: ClusterRun, owner: Account, members: list[Account]
) -> tuple[str, int, PartitionState]:
    """A group room whose partition of room-events is led by the broker that coordinates
    the push group, with all three copies in sync: that broker's death moves both the
    room's stream and the push group's committed offsets."""
    topic = run.topic(ROOM_EVENTS)
    coordinator = await coordinator_of(run.url, run.push_group)
    partitions = await partitions_of(run.url, topic)
    await befriend_all(run.a, owner, members)
    for _ in range(ROOM_TRIES):
        data = await as_user(
            run.a, owner, CREATE_GROUP, t="failover", m=[member.id for member in members]
        )
        room_id: str = data["createGroupRoom"]["id"]
        partition = partition_of(room_id, partitions)
        state = await partition_state(run.url, topic, partition)
        if state.leader == coordinator and len(state.in_sync) == BROKERS:
            return room_id, partition, state
    raise AssertionError(f"no room of {ROOM_TRIES} is led by broker {coordinator}")


async def send_until_stored(
    server: ServerProcess, sender: Account, room_id: str, text: str, client_id: str
) -> dict[str, Any]:
    """The send, retried with the same clientId while (and only while) it answers
    UNAVAILABLE; the stored message."""
    async with asyncio.timeout(RETRY_WITHIN_SECONDS):
        while True:
            try:
                return await send(server, sender, room_id, text, client_id)
            except TransportQueryError as exc:
                assert exc.errors is not None
                assert exc.errors[0]["extensions"]["code"] == "UNAVAILABLE", exc
            await asyncio.sleep(RETRY_PAUSE_SECONDS)  # as a client backs off before a retry


async def kill_and_restart(run: ClusterRun, partition: int, leader: int) -> PartitionState:
    """kill -9 of the partition's leader, the election of another, the broker's start;
    returns the partition's state once the broker holds an in-sync copy again."""
    topic = run.topic(ROOM_EVENTS)
    await kill_broker(leader)
    elected = await new_leader(run.url, topic, partition, leader)
    assert elected.leader != leader and leader not in elected.in_sync
    await asyncio.to_thread(start_kafka_cluster)
    return await back_in_sync(run.url, topic, partition, leader)


async def texts_until(feed: Subscription, last: str, room_id: str | None = None) -> list[str]:
    """The texts of the messages a subscription delivers, up to and including ``last``;
    ``room_id``: an account stream, whose other events (and rooms) are left out."""
    texts: list[str] = []
    async with asyncio.timeout(DELIVERY_SECONDS):
        while not texts or texts[-1] != last:
            result = await feed.next(DELIVERY_SECONDS)
            if room_id is None:
                texts.append(result["messageAdded"]["text"])
                continue
            payload = result["events"]["payload"]
            if payload["__typename"] == "MessageAdded" and payload["message"]["roomId"] == room_id:
                texts.append(payload["message"]["text"])
    return texts


@pytest.mark.kafka_failover
async def test_a_leader_broker_killed_mid_stream_loses_and_doubles_nothing(
    on_cluster: ClusterRun, receiver: PushReceiver
) -> None:
    run = on_cluster
    a, b = run.a, run.b
    alice, bob, carol = await sign_up(a), await sign_up(b), await sign_up(a)
    # Carol never connects: she is offline, and each message is pushed to her device.
    device = f"failover-{time.monotonic_ns()}"
    await as_user(b, carol, REGISTER_DEVICE, p="WEBHOOK", t=device)
    room_id, partition, before = await room_led_by_the_push_coordinator(run, alice, [bob, carol])
    expected = [f"m{number}" for number in range(1, SENDS + AFTER_REJOIN + 1)]

    async with AsyncExitStack() as stack:
        # Bob follows the room on both instances over both subprotocols, and his whole
        # account on each instance.
        feeds: list[Subscription] = []
        for server in (a, b):
            for subprotocol in SUBPROTOCOLS:
                session = await stack.enter_async_context(
                    ws_session(server, subprotocol, bob.token)
                )
                feeds.append(
                    await stack.enter_async_context(
                        subscribed(server, session, MESSAGE_ADDED, r=room_id, after=0)
                    )
                )
        accounts: list[Subscription] = []
        for server, subprotocol in ((a, TRANSPORT_WS), (b, LEGACY_WS)):
            session = await stack.enter_async_context(ws_session(server, subprotocol, bob.token))
            accounts.append(await stack.enter_async_context(subscribed(server, session, EVENTS)))

        failover: asyncio.Task[PartitionState] | None = None
        loop = asyncio.get_running_loop()
        for number, text in enumerate(expected[:SENDS], start=1):
            due = loop.time() + PACE_SECONDS
            server = (a, b)[number % 2]
            stored = await send_until_stored(server, alice, room_id, text, f"c-{number}")
            # Sent one after another: a message stored twice would take a seq of its own.
            assert (stored["seq"], stored["text"], stored["clientId"]) == (
                number,
                text,
                f"c-{number}",
            )
            if number == KILL_AFTER:
                failover = asyncio.create_task(kill_and_restart(run, partition, before.leader))
            await asyncio.sleep(max(0.0, due - loop.time()))  # the pace of a chat, not a wait
        assert failover is not None
        async with asyncio.timeout(FAILOVER_SECONDS):
            rejoined = await failover
        assert before.leader in rejoined.in_sync and len(rejoined.in_sync) == BROKERS

        # With the broker back, through both instances again.
        for number in range(SENDS + 1, SENDS + AFTER_REJOIN + 1):
            server = (a, b)[number % 2]
            stored = await send_until_stored(
                server, alice, room_id, expected[number - 1], f"c-{number}"
            )
            assert stored["seq"] == number

        # Each subscriber got each message once, in order: a repeat or a gap would show
        # before the last message.
        for feed in feeds:
            assert await texts_until(feed, expected[-1]) == expected
        for account in accounts:
            assert await texts_until(account, expected[-1], room_id) == expected

    # Stored once each, under its clientId.
    async with http_session(a, alice.token) as session:
        page = (await call(session, HISTORY, r=room_id, first=len(expected) + 1))["messages"]
    stored_messages = [edge["node"] for edge in page["edges"]]
    assert [(m["seq"], m["text"], m["clientId"]) for m in stored_messages] == [
        (number, text, f"c-{number}") for number, text in enumerate(expected, start=1)
    ]
    assert not page["pageInfo"]["hasNextPage"]

    # Carol's device got each message's push once, whichever push worker of the group
    # held the room's partition after the coordinator died.
    pushes = await receiver.wait_for_ids(len(expected), device, within=DELIVERY_SECONDS)
    assert sorted(int(push.data["seq"]) for push in pushes) == list(range(1, len(expected) + 1))
    assert len({push.push_id for push in pushes}) == len(pushes)
