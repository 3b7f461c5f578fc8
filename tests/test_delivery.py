"""Delivery across real server instances over Kafka: exactly once, in order, no gaps.

These tests run two server instances, A and B, on the real services (Kafka, FerretDB,
Redis). A test that needs an instance it may kill starts its own.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
import websockets
from gql.transport.exceptions import TransportConnectionFailed

from tests.support.chat import (
    MESSAGE_ADDED,
    ROOM_UPDATED,
    SEND,
    direct_room,
    group_room,
    history_seqs,
    send,
    send_many,
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
from tests.support.kafka_outage import (
    SHARED_OUTAGE_TEST_SECONDS,
    KafkaOutage,
    OutageServers,
    SharedOutage,
)
from tests.support.server import ServerProcess

# A killed instance's sockets are closed by the kernel: the client notices at once.
DEATH_NOTICED_SECONDS = 5.0
# Once Kafka is back: the relay publishing the outage's messages, and one live
# message after (the stop and start are bounded in tests/support/kafka_outage.py).
OUTAGE_CATCH_UP_SECONDS = 60.0
AFTER_OUTAGE_SECONDS = 30.0


def seqs(results: list[dict[str, Any]]) -> list[int]:
    return [result["messageAdded"]["seq"] for result in results]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_subscriber_on_a_receives_what_is_sent_through_b(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_b)
    room_id = await direct_room(server_b, alice, bob)
    async with (
        ws_session(server_a, subprotocol, bob.token) as session,
        subscribed(server_a, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        for i in range(1, 21):
            await send(server_b, alice, room_id, f"via b {i}", f"k{i}")
        received = await live.take(20)
        await send(server_a, alice, room_id, "via a")
        received.append(await live.next())
        live.assert_idle()
    assert seqs(received) == list(range(1, 22))
    assert received[0]["messageAdded"]["text"] == "via b 1"


async def test_concurrent_senders_on_both_instances_reach_every_subscriber_once_in_order(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    await senders_into_one_room_reach_every_subscriber(server_a, server_b, 20, 25)


async def test_64_senders_into_one_room_on_both_instances_store_every_seq_once_in_order(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    await senders_into_one_room_reach_every_subscriber(server_a, server_b, 64, 8)


async def senders_into_one_room_reach_every_subscriber(
    server_a: ServerProcess, server_b: ServerProcess, senders_count: int, each: int
) -> None:
    """Senders split over both instances, each waiting for its answers, all into one
    room; watchers on both instances and subprotocols get every seq once, in order."""
    senders = list(await asyncio.gather(*(sign_up(server_a) for _ in range(senders_count))))
    placements = [
        (server_a, TRANSPORT_WS),
        (server_a, LEGACY_WS),
        (server_b, TRANSPORT_WS),
        (server_b, LEGACY_WS),
    ]
    watchers = [await sign_up(server_a) for _ in placements]
    room_id = await group_room(server_a, senders[0], senders[1:] + watchers)
    total = senders_count * each

    async def sender(index: int, account: Account) -> None:
        server = server_a if index % 2 else server_b
        async with http_session(server, account.token) as session:
            for n in range(each):
                await call(session, SEND, r=room_id, t=f"s{index} n{n}", c=f"{index}-{n}")

    async with AsyncExitStack() as stack:
        subscriptions: list[Subscription] = []
        for (server, protocol), watcher in zip(placements, watchers, strict=True):
            session = await stack.enter_async_context(ws_session(server, protocol, watcher.token))
            subscriptions.append(
                await stack.enter_async_context(
                    subscribed(server, session, MESSAGE_ADDED, r=room_id, after=0)
                )
            )
        async with asyncio.TaskGroup() as group:
            for index, account in enumerate(senders):
                group.create_task(sender(index, account))
        for subscription in subscriptions:
            assert seqs(await subscription.take(total, within=120)) == list(range(1, total + 1))
            subscription.assert_idle()
    assert await history_seqs(server_b, watchers[0], room_id) == list(range(1, total + 1))


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_reconnect_with_after_seq_misses_nothing_and_repeats_nothing(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    async with (
        ws_session(server_a, subprotocol, bob.token) as session,
        subscribed(server_a, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        await send_many(server_b, alice, room_id, 5, "first")
        first = seqs(await live.take(5))
    # Disconnected: messages keep coming.
    await send_many(server_b, alice, room_id, 7, "while away")
    async with (
        ws_session(server_b, subprotocol, bob.token) as session,
        subscribed(server_b, session, MESSAGE_ADDED, r=room_id, after=first[-1]) as resumed,
    ):
        caught_up = seqs(await resumed.take(7))
        await send(server_a, alice, room_id, "live again")
        caught_up += seqs([await resumed.next()])
        resumed.assert_idle()
    assert first + caught_up == list(range(1, 14))


async def test_killed_instance_clients_resume_on_the_other_without_loss(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    doomed = ServerProcess("doomed", {**real_env, "PLOP_INSTANCE_ID": "doomed"})
    await doomed.start()
    try:
        alice, bob = await sign_up(server_a), await sign_up(server_a)
        room_id = await direct_room(server_a, alice, bob)
        received: list[int] = []
        async with ws_session(doomed, TRANSPORT_WS, bob.token) as session:
            async with subscribed(doomed, session, MESSAGE_ADDED, r=room_id) as live:
                await send_many(server_a, alice, room_id, 10, "before")
                received += seqs(await live.take(10))
                await doomed.kill()  # kill -9 mid-stream
                sending = asyncio.create_task(send_many(server_a, alice, room_id, 10, "during"))
                # The kernel closes a dead process's sockets at once: the stream fails
                # as a lost connection, without a close frame, long before any timeout.
                with pytest.raises(TransportConnectionFailed) as died:
                    await live.next(within=DEATH_NOTICED_SECONDS)
            await sending
    finally:
        await doomed.stop()
    cause = died.value.__cause__
    assert isinstance(cause, websockets.ConnectionClosedError), repr(cause)
    assert cause.rcvd is None, f"a dead server sent a close frame: {cause.rcvd}"
    async with (
        ws_session(server_a, TRANSPORT_WS, bob.token) as session,
        subscribed(server_a, session, MESSAGE_ADDED, r=room_id, after=received[-1]) as resumed,
    ):
        received += seqs(await resumed.take(10))
        resumed.assert_idle()
    assert received == list(range(1, 21))


async def messages_sent_while_kafka_is_down(servers: OutageServers, outage: KafkaOutage) -> None:
    server_a, server_b = servers.a, servers.b
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    async with (
        ws_session(server_b, TRANSPORT_WS, bob.token) as session,
        subscribed(server_b, session, MESSAGE_ADDED, r=room_id) as live,
        ws_session(server_a, LEGACY_WS, bob.token) as session_on_a,
        subscribed(server_a, session_on_a, MESSAGE_ADDED, r=room_id) as live_on_a,
    ):
        await send(server_a, alice, room_id, "before the outage", "k0")
        received = seqs([await live.next()])
        received_on_a = seqs([await live_on_a.next()])
        async with outage.down():
            # Stored although the broker is down; a retry neither fails nor duplicates.
            outage_sent = [
                await send(server_a, alice, room_id, f"outage {i}", f"k{i}") for i in (1, 2, 3)
            ]
            retried = await send(server_a, alice, room_id, "outage 1", "k1")
        assert [m["seq"] for m in outage_sent] == [2, 3, 4] and retried == outage_sent[0]
        received += seqs(await live.take(3, within=OUTAGE_CATCH_UP_SECONDS))
        received_on_a += seqs(await live_on_a.take(3, within=OUTAGE_CATCH_UP_SECONDS))
        # Both instances publish and consume again, without having been restarted.
        await send(server_b, alice, room_id, "after the outage", "k4")
        await send(server_a, alice, room_id, "after the outage, through a", "k5")
        received += seqs(await live.take(2, within=AFTER_OUTAGE_SECONDS))
        received_on_a += seqs(await live_on_a.take(2, within=AFTER_OUTAGE_SECONDS))
        live.assert_idle()
        live_on_a.assert_idle()
    assert received == received_on_a == [1, 2, 3, 4, 5, 6]
    assert await history_seqs(server_a, bob, room_id) == [1, 2, 3, 4, 5, 6]


@pytest.mark.restarts_kafka(scenario=messages_sent_while_kafka_is_down)
@pytest.mark.timeout(SHARED_OUTAGE_TEST_SECONDS)
async def test_messages_sent_while_kafka_is_down_are_delivered_once_it_is_back(
    kafka_outage: SharedOutage,
) -> None:
    kafka_outage.check(messages_sent_while_kafka_is_down)


async def test_room_updated_follows_the_viewers_rooms(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    me, friend, other = [await sign_up(server_a) for _ in range(3)]
    first_room = await direct_room(server_a, me, friend)
    async with (
        ws_session(server_a, LEGACY_WS, me.token) as session,
        subscribed(server_a, session, ROOM_UPDATED) as updates,
    ):
        await send(server_b, friend, first_room, "hello")
        update = (await updates.next())["roomUpdated"]
        assert (update["id"], update["lastSeq"]) == (first_room, 1)
        # A room the viewer joins after subscribing is followed too.
        new_room = await group_room(server_b, other, [me], "later")
        assert (await updates.next())["roomUpdated"]["id"] == new_room
        await send(server_b, other, new_room, "in the new room")
        update = (await updates.next())["roomUpdated"]
        assert (update["id"], update["lastMessage"]["text"]) == (new_room, "in the new room")
        # Rooms the viewer is not in stay silent.
        unrelated = await direct_room(server_b, friend, other)
        await send(server_b, friend, unrelated, "not for me")
        await send(server_b, friend, first_room, "for me")
        assert (await updates.next())["roomUpdated"]["id"] == first_room


async def test_instances_leave_no_consumer_groups_behind(
    server_a: ServerProcess, server_b: ServerProcess, real_env: dict[str, str]
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from pubsub.kafka import bootstrap_servers

    passing = ServerProcess("passing", {**real_env, "PLOP_INSTANCE_ID": "passing"})
    await passing.start()
    await passing.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(real_env["PLOP_BROKER_URL"]))
    await admin.start()
    try:
        groups = await admin.list_consumer_groups()
    finally:
        await admin.close()
    # A deployment's push worker group (<prefix>.push) is shared by all its instances
    # on purpose; no instance leaves a group of its own.
    names = {str(group[0]) if isinstance(group, tuple) else str(group) for group in groups}
    assert {
        name for name in names if name.startswith("plop") and not name.endswith(".push")
    } == set()
