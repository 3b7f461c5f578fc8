"""The Python client against real server processes: resume, paging, idempotent retries.

The resume tests start a server of their own on a fixed port, kill it with -9 while
messages keep coming through instance A, and start it again on the same URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing

import pytest

from client import (
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Backoff,
    MembersChanged,
    Message,
    MessageUpdated,
    PlopClient,
    PlopClientError,
    PlopTransportError,
    RoomActivity,
    Subprotocol,
    TypingEvent,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    active_subscriptions,
    unique_name,
    wait_active_subscriptions,
)
from tests.support.iterated import Iterated
from tests.support.server import ServerProcess, free_port

PASSWORD = "correct horse battery"
# A restarted server on the real services is back within seconds; the client's
# backoff is capped at 5 s, so this leaves room for both.
RESUME_TIMEOUT_SECONDS = 90.0
QUICK = Backoff(initial_seconds=0.01, factor=2.0, cap_seconds=0.05)


async def signed_up(
    stack: AsyncExitStack, server: ServerProcess, subprotocol: Subprotocol = TRANSPORT_WS
) -> PlopClient:
    """A client of a fresh user, open until the stack closes."""
    plop = await stack.enter_async_context(PlopClient(server.http_url, subprotocol=subprotocol))
    await plop.sign_up(unique_name(), PASSWORD)
    return plop


# Iterates a client's live messages in a task; the test awaits what it yields.
Live = Iterated[Message]


@contextlib.asynccontextmanager
async def settled(server: ServerProcess) -> AsyncIterator[None]:
    """Leaves the server's count of active subscriptions as the block found it.

    Tests that wait on that count (``subscribed()``) must start from a settled one, and
    a closed socket's subscriptions end on the server a moment after the client is gone.
    """
    before = await active_subscriptions(server)
    try:
        yield
    finally:
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            # Polls another process's /metrics: there is no event to await across processes.
            while await active_subscriptions(server) > before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def live(stream: AsyncGenerator[Message, None]) -> AsyncIterator[Live]:
    iterating = Live(stream)
    try:
        yield iterating
    finally:
        await iterating.close()


async def send_texts(plop: PlopClient, room_id: str, texts: list[str]) -> list[int]:
    return [(await plop.send_message(room_id, text)).seq for text in texts]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_live_messages_resume_after_a_server_is_killed_and_restarted(
    server_a: ServerProcess, real_env: dict[str, str], subprotocol: Subprotocol
) -> None:
    env = {**real_env, "PLOP_INSTANCE_ID": f"resume-{secrets.token_hex(3)}"}
    name = f"resume-{subprotocol}-{secrets.token_hex(3)}"
    servers = [ServerProcess(name, env, port=free_port())]
    await servers[0].start()
    try:
        async with AsyncExitStack() as stack:
            alice = await signed_up(stack, server_a)
            bob = await signed_up(stack, server_a)
            assert bob.token is not None
            room = await alice.create_direct_room((await bob.me()).id)
            reader = await stack.enter_async_context(
                PlopClient(servers[0].http_url, bob.token, subprotocol)
            )
            # after_seq=0: the room is new, and the first sends may beat the iterator's
            # start (from now, with None).
            received = await stack.enter_async_context(live(reader.messages(room.id, 0)))

            # Kill -9 mid-stream: while the first ten are being sent and delivered.
            before = asyncio.create_task(
                send_texts(alice, room.id, [f"before {i}" for i in range(10)])
            )
            seen = await received.take(3)
            await servers[0].kill()
            sent = await before
            # Sending goes on through A while the server is down, then while it restarts.
            sent += await send_texts(alice, room.id, [f"while down {i}" for i in range(10)])
            servers.append(ServerProcess(name, env, port=servers[0].port))
            async with asyncio.TaskGroup() as group:
                group.create_task(servers[1].start())
                during = group.create_task(
                    send_texts(alice, room.id, [f"restarting {i}" for i in range(10)])
                )
            sent += during.result()
            seen += await received.take(27, within=RESUME_TIMEOUT_SECONDS)

            sent += await send_texts(alice, room.id, ["after"])
            seen += await received.take(1)
            received.assert_idle()
            assert received.running
    finally:
        for server in servers:
            await server.stop()
    assert sent == list(range(1, 32))
    assert [message.seq for message in seen] == sent
    assert [message.text for message in seen][9:12] == ["before 9", "while down 0", "while down 1"]


async def test_live_messages_with_after_seq_replay_then_follow(any_server: ServerProcess) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(settled(any_server))
        alice = await signed_up(stack, any_server)
        bob = await signed_up(stack, any_server, LEGACY_WS)
        author = await alice.me()
        room = await alice.create_group_room("replay", [(await bob.me()).id])
        # Not alice's friend: bob joins by accepting the invitation.
        (invitation,) = await bob.room_invitations()
        assert (invitation.room.id, invitation.inviter) == (room.id, author)
        await bob.respond_to_room_invitation(invitation.id, accept=True)
        await send_texts(alice, room.id, ["one", "two", "three"])
        received = await stack.enter_async_context(live(bob.messages(room.id, after_seq=1)))
        seen = await received.take(2)
        await send_texts(alice, room.id, ["four"])
        seen += await received.take(1)
        received.assert_idle()
    assert [(message.seq, message.text) for message in seen] == [
        (2, "two"),
        (3, "three"),
        (4, "four"),
    ]
    assert {message.sender for message in seen} == {author}
    assert {message.room_id for message in seen} == {room.id}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_live_messages_end_with_errors_a_retry_cannot_fix(
    any_server: ServerProcess, subprotocol: Subprotocol
) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(settled(any_server))
        alice = await signed_up(stack, any_server)
        outsider = await signed_up(stack, any_server, subprotocol)
        room = await alice.create_group_room("members only", [])
        not_member = await stack.enter_async_context(live(outsider.messages(room.id, after_seq=0)))
        forged = await stack.enter_async_context(
            PlopClient(any_server.http_url, "not-a-token", subprotocol)
        )
        unauthenticated = await stack.enter_async_context(
            live(forged.messages(room.id, after_seq=0))
        )
        # A retried error would never end the iterator: failure() would time out.
        refused = await not_member.failure()
        rejected = await unauthenticated.failure()
    assert isinstance(refused, PlopClientError) and refused.code == "FORBIDDEN"
    assert isinstance(rejected, PlopClientError) and rejected.code == "UNAUTHENTICATED"
    assert not refused.retryable and not rejected.retryable


async def test_history_pages_forward_through_the_whole_room(any_server: ServerProcess) -> None:
    async with AsyncExitStack() as stack:
        alice = await signed_up(stack, any_server)
        room = await alice.create_group_room("long", [])
        sent = await send_texts(alice, room.id, [f"m{i}" for i in range(1, 26)])
        paged = [message async for message in alice.history(room.id, page_size=10)]
        whole = [message async for message in alice.history(room.id)]
        empty_room = await alice.create_group_room("empty", [])
        nothing = [message async for message in alice.history(empty_room.id, page_size=10)]
    assert sent == list(range(1, 26))
    assert [message.seq for message in paged] == sent
    assert [message.text for message in paged] == [f"m{i}" for i in range(1, 26)]
    assert paged == whole
    assert nothing == []


async def test_send_with_the_same_client_id_returns_the_first_message(
    any_server: ServerProcess,
) -> None:
    async with AsyncExitStack() as stack:
        alice = await signed_up(stack, any_server)
        room = await alice.create_group_room("once", [])
        first = await alice.send_message(room.id, "hello", client_id="retry-me")
        again = await alice.send_message(room.id, "hello", client_id="retry-me")
        generated = await alice.send_message(room.id, "no key given")
        history = [message async for message in alice.history(room.id)]
    assert again == first and first.client_id == "retry-me"
    assert generated.seq == 2 and generated.client_id and generated.client_id != "retry-me"
    assert [message.seq for message in history] == [1, 2]


class LosingProxy:
    """A TCP proxy to a server that loses the answer to the first request it forwards.

    The first connection's request reaches the server; as soon as the server starts to
    answer, the proxy cuts the client off. Later connections are forwarded untouched.
    """

    def __init__(self, upstream: ServerProcess) -> None:
        self._upstream_port = upstream.port
        self.lost = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> LosingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/graphql"

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_upstream = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        try:
            if self.lost == 0:
                self.lost += 1
                forwarding = asyncio.create_task(self._pump(client, to_upstream))
                await upstream.read(1)  # the server answers: the message is stored
                forwarding.cancel()
                to_client.transport.abort()
            else:
                await asyncio.gather(
                    self._pump(client, to_upstream), self._pump(upstream, to_client)
                )
        finally:
            to_upstream.close()
            to_client.close()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65_536):
                sink.write(data)
                await sink.drain()
        sink.close()


async def test_send_whose_answer_was_lost_is_retried_without_a_duplicate(
    server_a: ServerProcess,
) -> None:
    async with AsyncExitStack() as stack:
        alice = await signed_up(stack, server_a)
        room = await alice.create_group_room("lossy", [])
        proxy = await stack.enter_async_context(LosingProxy(server_a))
        through_proxy = await stack.enter_async_context(
            PlopClient(proxy.url, alice.token, backoff=QUICK)
        )
        sent = await through_proxy.send_message(room.id, "exactly once")
        history = [message async for message in alice.history(room.id)]
    assert proxy.lost == 1
    assert history == [sent]
    assert sent.seq == 1 and sent.client_id


async def test_transport_errors_are_retried_then_reported() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/graphql"
    async with PlopClient(nowhere, "token", backoff=QUICK, send_attempts=3) as plop:
        with pytest.raises(PlopTransportError) as send_failed:
            await plop.send_message("room", "hello")
        stream = plop.messages("room", after_seq=0, max_attempts=3)
        with pytest.raises(PlopTransportError) as follow_failed:
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS), aclosing(stream):
                async for _ in stream:
                    pass
    assert send_failed.value.code == follow_failed.value.code == "TRANSPORT"
    assert send_failed.value.retryable and follow_failed.value.retryable


async def test_a_wrong_url_ends_calls_and_live_messages_at_once(
    embedded_server: ServerProcess,
) -> None:
    wrong = f"{embedded_server.base_url}/not-graphql"
    async with PlopClient(wrong, "token") as plop:
        with pytest.raises(PlopTransportError) as send_failed:
            await plop.send_message("room", "hello")
        # No max_attempts: an error that was retried would never end the iterator.
        async with live(plop.messages("room", after_seq=0)) as following:
            follow_failed = await following.failure()
    assert not send_failed.value.retryable and "404" in send_failed.value.message
    assert isinstance(follow_failed, PlopTransportError) and not follow_failed.retryable


async def test_sign_up_and_log_in_keep_the_token_on_the_client(
    embedded_server: ServerProcess,
) -> None:
    username = unique_name()
    async with PlopClient(embedded_server.http_url) as plop:
        signed = await plop.sign_up(username, PASSWORD, display_name="Dee")
        assert plop.token == signed.token
        logged = await plop.log_in(username, PASSWORD)
        assert plop.token == logged.token != signed.token
        me = await plop.me()
        with pytest.raises(PlopClientError) as wrong:
            await plop.log_in(username, "not the password")
    assert me == logged.user == signed.user
    assert (me.username, me.display_name) == (username, "Dee")
    assert wrong.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_edit_delete_typing_and_room_activity(
    any_server: ServerProcess, subprotocol: Subprotocol
) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(settled(any_server))
        alice = await signed_up(stack, any_server)
        bob = await signed_up(stack, any_server, subprotocol)
        author = await alice.me()
        room = await alice.create_direct_room((await bob.me()).id)
        sent = await alice.send_message(room.id, "helo")
        arrived: asyncio.Queue[RoomActivity] = asyncio.Queue()

        async def follow() -> None:
            async with aclosing(bob.activity(room.id, max_attempts=1)) as events:
                async for event in events:
                    # The room's creation is published before this subscribes, and
                    # over Kafka it may still be consumed after: membership is left out.
                    if not isinstance(event, MembersChanged):
                        arrived.put_nowait(event)

        before = await active_subscriptions(any_server)
        following = asyncio.create_task(follow())

        async def stop_following() -> None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

        stack.push_async_callback(stop_following)
        await wait_active_subscriptions(any_server, before + 1)
        edited = await alice.edit_message(sent.id, "hello")
        await alice.set_typing(room.id)
        deleted = await alice.delete_message(sent.id)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            seen = [await arrived.get() for _ in range(3)]
        history = [message async for message in alice.history(room.id)]
    assert (edited.seq, edited.text, edited.edited_at is not None) == (1, "hello", True)
    assert (deleted.seq, deleted.text, deleted.deleted) == (1, "", True)
    assert seen == [
        MessageUpdated(edited),
        TypingEvent(room.id, author, True),
        MessageUpdated(deleted),
    ]
    assert history == [deleted], f"history {history!r} != the delete's answer {deleted!r}"
