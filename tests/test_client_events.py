"""``PlopClient.events()``: the whole account through the Python client, against real
server processes on both WebSocket subprotocols.

The resume tests cut the client off as users get cut off: a server of the test's own
killed with -9 and started again on the same port, or a proxy in front of instance A
that drops every connection and refuses new ones for a while. Messages keep coming
through instance A meanwhile; each must arrive once, in seq order per room.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing

import pytest
from gql import GraphQLRequest
from graphql import build_schema, validate
from redis.asyncio import Redis

from client import (
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    AccountEvent,
    Backoff,
    MembersChanged,
    Message,
    MessageAdded,
    MessageUpdated,
    PlopClient,
    PlopClientError,
    PlopSyncTokenExpired,
    PlopTransportError,
    RoomInvited,
    RoomJoined,
    RoomLeft,
    Subprotocol,
    TypingEvent,
    operations,
)
from client._parsing import parse_account_event
from live.account_cursor import Cursor
from schema.export import served_sdl
from services.sync_tokens import SyncTokens
from settings import Settings
from tests.support.chat import as_user, group_room, send, send_many
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    Account,
    active_subscriptions,
    http_session,
    sign_up,
    wait_active_subscriptions,
)
from tests.support.iterated import Iterated
from tests.support.server import ServerProcess, free_port
from tests.support.tcp_proxy import TcpProxy

# A restarted server on the real services is back within seconds; the client's
# backoff is capped at 5 s, so this leaves room for both.
RESUME_TIMEOUT_SECONDS = 90.0
QUICK = Backoff(initial_seconds=0.01, factor=2.0, cap_seconds=0.05)
RETENTION_SECONDS = Settings().sync_retention_seconds
REMOVE = "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }"
TYPING = "mutation($r: ID!) { setTyping(roomId: $r, typing: true) }"


class Following(Iterated[AccountEvent]):
    """Iterates ``events()`` in a task; the test awaits what it yields."""

    async def until_messages(
        self, count: int, within: float = EVENT_TIMEOUT_SECONDS
    ) -> list[AccountEvent]:
        """Events until ``count`` messages came, within one deadline; every event on
        the way is returned."""
        taken: list[AccountEvent] = []
        async with asyncio.timeout(within):
            while len(messages_of(taken)) < count:
                taken.append(await self.next(within))
        return taken

    def assert_no_message_waiting(self) -> None:
        """No message arrived beyond those awaited (checked after the last one sent)."""
        while not self._items.empty():
            item = self._items.get_nowait()
            assert isinstance(item, AccountEvent), item
            assert not isinstance(item.payload, MessageAdded), f"extra message {item!r}"


@contextlib.asynccontextmanager
async def following(
    server: ServerProcess, stream: AsyncGenerator[AccountEvent, None]
) -> AsyncIterator[Following]:
    """The stream, subscribed on the server when the block starts: without a token it
    starts from now, so the test sends nothing before that."""
    before = await active_subscriptions(server)
    iterating = Following(stream)
    try:
        await wait_active_subscriptions(server, before + 1)
        yield iterating
    finally:
        await iterating.close()


def messages_of(events: list[AccountEvent]) -> list[Message]:
    return [event.payload.message for event in events if isinstance(event.payload, MessageAdded)]


def seqs_by_room(events: list[AccountEvent]) -> dict[str, list[int]]:
    by_room: dict[str, list[int]] = defaultdict(list)
    for message in messages_of(events):
        by_room[message.room_id].append(message.seq)
    return dict(by_room)


async def send_texts(server: ServerProcess, sender: Account, room: str, texts: list[str]) -> None:
    for text in texts:
        await send(server, sender, room, text)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_events_resume_across_a_killed_and_restarted_server(
    server_a: ServerProcess, real_env: dict[str, str], subprotocol: Subprotocol
) -> None:
    env = {**real_env, "PLOP_INSTANCE_ID": f"events-{secrets.token_hex(3)}"}
    name = f"events-{subprotocol}-{secrets.token_hex(3)}"
    servers = [ServerProcess(name, env, port=free_port())]
    await servers[0].start()
    try:
        viewer, first, second = [await sign_up(server_a, p) for p in ("v", "a", "b")]
        one = await group_room(server_a, first, [viewer], "one")
        two = await group_room(server_a, second, [viewer], "two")
        async with AsyncExitStack() as stack:
            reader = await stack.enter_async_context(
                PlopClient(servers[0].http_url, viewer.token, subprotocol)
            )
            events = await stack.enter_async_context(following(servers[0], reader.events()))

            # Kill -9 mid-stream: while the first twenty are being sent and delivered.
            before = asyncio.gather(
                send_many(server_a, first, one, 10, "one before"),
                send_many(server_a, second, two, 10, "two before"),
            )
            seen = await events.until_messages(3)
            await servers[0].kill()
            await before
            # Sending goes on through A while the server is down: to both rooms, and
            # to a room the viewer is put in meanwhile.
            await send_many(server_a, first, one, 10, "one while down")
            await send_many(server_a, second, two, 10, "two while down")
            joined = await group_room(server_a, second, [viewer], "joined while down")
            await send_many(server_a, second, joined, 3, "joined")
            servers.append(ServerProcess(name, env, port=servers[0].port))
            async with asyncio.TaskGroup() as group:
                group.create_task(servers[1].start())
                group.create_task(send_many(server_a, first, one, 5, "one restarting"))
                group.create_task(send_many(server_a, second, two, 5, "two restarting"))
            seen += await events.until_messages(
                25 + 25 + 3 - len(messages_of(seen)), within=RESUME_TIMEOUT_SECONDS
            )
            await send(server_a, first, one, "after")
            seen += await events.until_messages(1)
            events.assert_no_message_waiting()
    finally:
        for server in servers:
            await server.stop()
    assert seqs_by_room(seen) == {
        one: list(range(1, 27)),
        two: list(range(1, 26)),
        joined: [1, 2, 3],
    }
    texts = [message.text for message in messages_of(seen) if message.room_id == one]
    assert texts[9:11] == ["one before 10", "one while down 1"]
    assert texts[-1] == "after"


async def test_events_resume_when_the_connection_drops_and_comes_back(
    server_a: ServerProcess,
) -> None:
    viewer, sender = await sign_up(server_a, "v"), await sign_up(server_a, "s")
    rooms = [await group_room(server_a, sender, [viewer], f"r{n}") for n in range(2)]
    proxy = TcpProxy("127.0.0.1", server_a.port)
    await proxy.start()
    try:
        url = f"http://127.0.0.1:{proxy.port}/graphql"
        async with (
            PlopClient(url, viewer.token, LEGACY_WS, backoff=QUICK) as reader,
            following(server_a, reader.events()) as events,
        ):
            await send_texts(server_a, sender, rooms[0], ["a0", "a1"])
            seen = await events.until_messages(2)
            await proxy.stop()  # the socket drops; reconnecting is refused for now
            await send_texts(server_a, sender, rooms[0], ["a2", "a3"])
            await send_texts(server_a, sender, rooms[1], ["b0", "b1", "b2"])
            await proxy.start()
            seen += await events.until_messages(5)
            await send_texts(server_a, sender, rooms[1], ["b3"])
            seen += await events.until_messages(1)
            events.assert_no_message_waiting()
    finally:
        await proxy.stop()
    assert [message.text for message in messages_of(seen)] == [
        "a0",
        "a1",
        "a2",
        "a3",
        "b0",
        "b1",
        "b2",
        "b3",
    ]
    assert seqs_by_room(seen) == {rooms[0]: [1, 2, 3, 4], rooms[1]: [1, 2, 3, 4]}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_events_from_a_saved_token_give_exactly_what_followed_it(
    any_server: ServerProcess, subprotocol: Subprotocol
) -> None:
    viewer, sender = await sign_up(any_server, "v"), await sign_up(any_server, "s")
    rooms = [await group_room(any_server, sender, [viewer], f"r{n}") for n in range(2)]
    async with PlopClient(any_server.http_url, viewer.token, subprotocol) as reader:
        async with following(any_server, reader.events()) as events:
            for n in range(6):
                await send(any_server, sender, rooms[n % 2], f"m{n}")
            first = await events.until_messages(6)
        saved = next(
            event.token
            for event in first
            if isinstance(event.payload, MessageAdded) and event.payload.message.text == "m2"
        )
        for n in range(6, 10):  # sent while the app is closed
            await send(any_server, sender, rooms[n % 2], f"m{n}")
        async with following(any_server, reader.events(since=saved)) as resumed:
            again = await resumed.until_messages(7)
            await send(any_server, sender, rooms[0], "live")
            again += await resumed.until_messages(1)
            resumed.assert_no_message_waiting()
    assert [message.text for message in messages_of(again)] == [
        *(f"m{n}" for n in range(3, 10)),
        "live",
    ]
    assert all(event.token for event in again)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_an_expired_token_raises_its_own_error_and_bad_ones_end_the_stream(
    server_a: ServerProcess, real_env: dict[str, str], subprotocol: Subprotocol
) -> None:
    viewer, other = await sign_up(server_a, "v"), await sign_up(server_a, "o")
    room = await group_room(server_a, other, [viewer])
    redis = Redis.from_url(real_env["PLOP_REDIS_URL"], decode_responses=True)
    try:
        tokens = SyncTokens(redis, retention_seconds=24 * 3_600)
        expired = await tokens.encode(
            viewer.id, Cursor(upto=1, at=time.time() - RETENTION_SECONDS - 60)
        )
    finally:
        await redis.aclose()
    async with AsyncExitStack() as stack:
        others = await stack.enter_async_context(
            PlopClient(server_a.http_url, other.token, subprotocol)
        )
        async with following(server_a, others.events()) as events:
            await send(server_a, other, room, "x")
            (others_event,) = await events.until_messages(1)
        reader = await stack.enter_async_context(
            PlopClient(server_a.http_url, viewer.token, subprotocol)
        )
        forged = await stack.enter_async_context(
            PlopClient(server_a.http_url, "not-a-token", subprotocol)
        )
        # No max_attempts: an error that was retried would never end the iterator.
        endings = [
            Following(reader.events(since=expired)),
            Following(reader.events(since="nonsense")),
            Following(reader.events(since=others_event.token)),
            Following(forged.events()),
        ]
        try:
            too_old, garbage, not_theirs, unauthenticated = [
                await ending.failure() for ending in endings
            ]
        finally:
            for ending in endings:
                await ending.close()
    assert isinstance(too_old, PlopSyncTokenExpired)
    assert (too_old.code, too_old.reason, too_old.retryable) == (
        "BAD_USER_INPUT",
        "SYNC_TOKEN_EXPIRED",
        False,
    )
    assert isinstance(garbage, PlopClientError) and not isinstance(garbage, PlopSyncTokenExpired)
    assert garbage.code == "BAD_USER_INPUT"
    assert isinstance(not_theirs, PlopClientError) and not_theirs.code == "FORBIDDEN"
    assert isinstance(unauthenticated, PlopClientError)
    assert unauthenticated.code == "UNAUTHENTICATED"


async def test_joins_messages_typing_and_leaves_arrive_typed(any_server: ServerProcess) -> None:
    viewer, friend = await sign_up(any_server, "v"), await sign_up(any_server, "f")
    async with (
        PlopClient(any_server.http_url, viewer.token, TRANSPORT_WS) as reader,
        following(any_server, reader.events()) as events,
    ):
        room = await group_room(any_server, friend, [viewer], "together")
        sent = await send(any_server, friend, room, "hello")
        await as_user(any_server, friend, TYPING, r=room)
        seen: list[AccountEvent] = []
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            # Typing is live only, and a removal (a control event) is read before data
            # that waits beside it: the notice is seen before the removal is made.
            while not any(isinstance(event.payload, TypingEvent) for event in seen):
                seen.append(await events.next())
        await as_user(any_server, friend, REMOVE, r=room, u=viewer.id)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            while not any(isinstance(event.payload, RoomLeft) for event in seen):
                seen.append(await events.next())
    payloads = [event.payload for event in seen if not isinstance(event.payload, MembersChanged)]
    assert [type(payload) for payload in payloads] == [
        RoomJoined,
        MessageAdded,
        TypingEvent,
        RoomLeft,
    ]
    joined, added, typing, left = payloads
    assert isinstance(joined, RoomJoined) and joined.room.id == room
    assert joined.room.title == "together"
    assert {member.id for member in joined.room.members} == {viewer.id, friend.id}
    assert isinstance(added, MessageAdded)
    message = added.message
    assert (message.id, message.room_id, message.seq) == (sent["id"], room, 1)
    assert (message.text, message.sender.id) == ("hello", friend.id)
    assert isinstance(typing, TypingEvent)
    assert (typing.room_id, typing.user.id, typing.typing) == (room, friend.id, True)
    assert left == RoomLeft(room)
    assert all(event.token for event in seen)


def test_the_events_document_is_valid_against_the_served_schema() -> None:
    assert validate(build_schema(served_sdl()), operations.EVENTS.document) == []


async def test_edits_and_invitations_parse_from_what_the_server_answers(
    embedded_server: ServerProcess,
) -> None:
    """The events document asks for an invitation and an edited message with the same
    selections as roomInvitations and editMessage: their raw answers, as payloads,
    read back as what the client's own calls returned."""
    viewer, stranger = await sign_up(embedded_server, "v"), await sign_up(embedded_server, "s")
    async with AsyncExitStack() as stack:
        author = await stack.enter_async_context(
            PlopClient(embedded_server.http_url, stranger.token)
        )
        reader = await stack.enter_async_context(PlopClient(embedded_server.http_url, viewer.token))
        room = await author.create_group_room("strangers", [viewer.id])
        (invitation,) = await reader.room_invitations()
        sent = await author.send_message(room.id, "helo")
        edited = await author.edit_message(sent.id, "hello")
        async with http_session(embedded_server, viewer.token) as session:
            (raw_invitation,) = (await session.execute(operations.ROOM_INVITATIONS))[
                "roomInvitations"
            ]
        async with http_session(embedded_server, stranger.token) as session:
            page = await session.execute(
                GraphQLRequest(
                    operations.HISTORY_PAGE,
                    variable_values={"roomId": room.id, "first": 1, "after": None},
                )
            )
        raw_message = page["messages"]["edges"][0]["node"]
    invited = parse_account_event(
        {"token": "t1", "payload": {"__typename": "RoomInvited", "invitation": raw_invitation}}
    )
    updated = parse_account_event(
        {"token": "t2", "payload": {"__typename": "MessageUpdated", "message": raw_message}}
    )
    assert invited == AccountEvent("t1", RoomInvited(invitation))
    assert updated == AccountEvent("t2", MessageUpdated(edited))
    assert invitation.room.id == room.id and invitation.inviter.id == stranger.id
    assert (edited.text, edited.edited_at is not None) == ("hello", True)


async def test_events_give_up_after_max_attempts_when_nothing_answers() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/graphql"
    async with PlopClient(nowhere, "token", backoff=QUICK) as plop:
        stream = plop.events(max_attempts=3)
        with pytest.raises(PlopTransportError) as failed:
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS), aclosing(stream):
                async for _ in stream:
                    pass
    assert failed.value.retryable and failed.value.unreachable
