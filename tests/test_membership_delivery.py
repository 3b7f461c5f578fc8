"""Leaving a room, or being removed from it, ends delivery, even when the leaver's
stream lags behind a burst.

The server here keeps tiny inboxes (two events) and re-reads membership on its
timer only every two minutes, so what ends a leaver's stream in these tests is the
membership event itself (never dropped for data) or the membership tag of a later
message, not the timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio

from tests.support.chat import LEAVE, MESSAGE_ADDED, SEND, as_user, group_room, send
from tests.support.clients import SUBPROTOCOLS, TRANSPORT_WS, call, http_session, sign_up
from tests.support.kafka_outage import (
    SHARED_OUTAGE_TEST_SECONDS,
    KafkaOutage,
    OutageServers,
    SharedOutage,
)
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess

BURST = 40


@asynccontextmanager
async def started_lagging_server(
    real_env: dict[str, str], name: str
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(
        name,
        {
            **real_env,
            "PLOP_SUBSCRIBER_QUEUE_EVENTS": "2",
            "PLOP_MEMBERSHIP_CHECK_SECONDS": "120",
        },
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lagging_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    async with started_lagging_server(real_env, "lagging-inboxes") as server:
        yield server


def ended_forbidden(frames: list[dict[str, object]]) -> bool:
    return any("FORBIDDEN" in repr(frame) for frame in frames)


REMOVE = "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }"


@pytest.mark.parametrize("removed", [False, True], ids=["leaves", "is-removed"])
@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_member_who_leaves_or_is_removed_while_lagging_gets_nothing_after(
    lagging_server: ServerProcess, subprotocol: str, removed: bool
) -> None:
    alice, bob = await sign_up(lagging_server), await sign_up(lagging_server)
    room_id = await group_room(lagging_server, alice, [bob])
    async with raw_socket(lagging_server, subprotocol, bob.token) as socket:
        # From seq 0: the first message arrives even if it is sent before the server
        # registered the subscription.
        await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
        await send(lagging_server, alice, room_id, "first")
        assert (await socket.frame())["payload"]["data"]["messageAdded"]["text"] == "first"

        # A burst the consumer hands over in large batches: the two-event inbox
        # overflows, and the leave's event lands among the dropped messages.
        async with http_session(lagging_server, alice.token) as session:
            burst = [
                asyncio.create_task(call(session, SEND, r=room_id, t=f"burst {i}"))
                for i in range(BURST)
            ]
            await asyncio.sleep(0)  # the burst is on its way before the leave
            if removed:
                await as_user(lagging_server, alice, REMOVE, r=room_id, u=bob.id)
            else:
                assert (await as_user(lagging_server, bob, LEAVE, r=room_id))["leaveRoom"]
            await asyncio.gather(*burst)
        await send(lagging_server, alice, room_id, "after leaving")

        frames = []
        async with asyncio.timeout(60):
            while True:
                frame = await socket.frame()
                frames.append(frame)
                if frame["type"] in ("complete", "error"):
                    break
        texts = [
            frame["payload"]["data"]["messageAdded"]["text"]
            for frame in frames
            if frame["type"] in ("next", "data") and frame["payload"].get("data")
        ]
        assert "after leaving" not in texts
        assert ended_forbidden(frames), frames
        if subprotocol == TRANSPORT_WS:
            assert frames[-1]["type"] == "complete"


async def ended_frames(socket: RawSocket) -> list[dict[str, object]]:
    """The socket's frames up to and with the one that ends its subscription."""
    frames = []
    async with asyncio.timeout(90):
        while (frame := await socket.frame(within=90))["type"] not in ("complete", "error"):
            frames.append(frame)
    frames.append(frame)
    return frames


async def a_leave_and_a_removal_while_the_broker_is_down(
    servers: OutageServers, outage: KafkaOutage
) -> None:
    """The events of a leave and of a removal are lost with the broker; the next
    message carries the room's new membership tag, so each stream re-reads who is in
    the room and ends."""
    async with started_lagging_server(servers.real_env, "lagging-outage") as lagging_server:
        alice, carol, dave = [await sign_up(lagging_server) for _ in range(3)]
        room_id = await group_room(lagging_server, alice, [carol, dave])
        async with (
            raw_socket(lagging_server, TRANSPORT_WS, carol.token) as leavers,
            raw_socket(lagging_server, TRANSPORT_WS, dave.token) as removeds,
        ):
            sockets = (leavers, removeds)
            # From seq 0: "before" arrives even if it is sent before the server
            # registered the subscription.
            for socket in sockets:
                await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
            await send(lagging_server, alice, room_id, "before")
            for socket in sockets:
                assert (await socket.frame())["payload"]["data"]["messageAdded"]["text"] == "before"
            async with outage.down():
                assert (await as_user(lagging_server, carol, LEAVE, r=room_id))["leaveRoom"]
                await as_user(lagging_server, alice, REMOVE, r=room_id, u=dave.id)
            await send(lagging_server, alice, room_id, "after leaving")
            for socket in sockets:
                frames = await ended_frames(socket)
                assert ended_forbidden(frames), frames
                assert "after leaving" not in repr(frames)


@pytest.mark.restarts_kafka(scenario=a_leave_and_a_removal_while_the_broker_is_down)
@pytest.mark.timeout(SHARED_OUTAGE_TEST_SECONDS)
async def test_a_leave_or_a_removal_while_the_broker_is_down_still_ends_the_stream(
    kafka_outage: SharedOutage,
) -> None:
    kafka_outage.check(a_leave_and_a_removal_while_the_broker_is_down)
