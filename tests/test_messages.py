"""Sending, idempotency, seq, history paging and live delivery on one instance."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.chat import (
    HISTORY,
    MARK_READ,
    MESSAGE_ADDED,
    ROOM,
    SEND,
    as_user,
    direct_room,
    group_room,
    history_seqs,
    send,
    send_many,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess


async def test_seq_counts_1_2_3_and_message_fields(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server, display_name="Bob B")
    room_id = await direct_room(any_server, alice, bob)
    first = await send(any_server, alice, room_id, "hi bob", "c-1")
    second = await send(any_server, bob, room_id, "hi alice")
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["roomId"] == room_id and first["clientId"] == "c-1"
    assert first["sender"] == {
        "id": alice.id,
        "username": alice.username,
        "displayName": alice.username,
    }
    assert second["sender"]["displayName"] == "Bob B" and second["clientId"] is None
    assert first["deleted"] is False and first["editedAt"] is None
    assert first["createdAt"].endswith("+00:00")


@pytest.mark.parametrize(
    ("text", "client_id"),
    [("", None), ("   \n\t ", None), ("x" * 4001, None), ("ok", "c" * 65), ("ok", "")],
)
async def test_bad_message_is_bad_user_input_and_stores_nothing(
    any_server: ServerProcess, text: str, client_id: str | None
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, SEND, r=room_id, t=text, c=client_id) == "BAD_USER_INPUT"
    assert (await as_user(any_server, alice, ROOM, r=room_id))["room"]["lastSeq"] == 0
    assert (await send(any_server, alice, room_id, "x" * 4000, "c" * 64))["seq"] == 1


async def test_retry_with_same_client_id_returns_first_message(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    first = await send(any_server, alice, room_id, "once", "retry-me")
    again = await send(any_server, alice, room_id, "once (retried)", "retry-me")
    assert again == first
    # Another user's identical clientId is their own.
    other = await send(any_server, bob, room_id, "mine", "retry-me")
    assert other["seq"] == 2
    assert await history_seqs(any_server, alice, room_id) == [1, 2]


async def test_concurrent_retries_store_one_message(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    sent = await asyncio.gather(
        *(send(any_server, alice, room_id, "flaky network", "same-key") for _ in range(8))
    )
    assert len({message["id"] for message in sent}) == 1
    assert await history_seqs(any_server, alice, room_id) == [1]


async def test_retries_queued_behind_a_busy_room_return_the_first_message_once(
    any_server: ServerProcess,
) -> None:
    members = [await sign_up(any_server) for _ in range(8)]
    room_id = await group_room(any_server, members[0], members[1:])
    busy = [send_many(any_server, member, room_id, 10, "busy") for member in members[1:]]
    retries = [send(any_server, members[0], room_id, "retried", "queued-twice") for _ in range(3)]
    *_, first, second, third = await asyncio.gather(*busy, *retries)
    assert first == second == third
    # 70 busy messages and the retried one, once, with no gap.
    assert await history_seqs(any_server, members[0], room_id) == list(range(1, 72))


async def test_client_id_reused_in_another_room_is_conflict(any_server: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    first_room = await direct_room(any_server, alice, bob)
    second_room = await direct_room(any_server, alice, carol)
    await send(any_server, alice, first_room, "a", "k")
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, SEND, r=second_room, t="b", c="k") == "CONFLICT"


async def test_concurrent_senders_get_gap_free_unique_seqs(any_server: ServerProcess) -> None:
    members = [await sign_up(any_server) for _ in range(4)]
    room_id = await group_room(any_server, members[0], members[1:])
    sent = await asyncio.gather(
        *(send(any_server, members[i % 4], room_id, f"m{i}") for i in range(40))
    )
    assert sorted(message["seq"] for message in sent) == list(range(1, 41))
    assert await history_seqs(any_server, members[0], room_id) == list(range(1, 41))


async def test_history_pages_back_and_forth(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    await send_many(any_server, alice, room_id, 120, "n")
    async with http_session(any_server, bob.token) as session:
        newest = (await call(session, HISTORY, r=room_id))["messages"]
        assert [e["node"]["seq"] for e in newest["edges"]] == list(range(71, 121))
        assert newest["pageInfo"]["hasPreviousPage"] is True
        assert newest["pageInfo"]["hasNextPage"] is False
        back = (
            await call(
                session, HISTORY, r=room_id, last=60, before=newest["pageInfo"]["startCursor"]
            )
        )["messages"]
        assert [e["node"]["seq"] for e in back["edges"]] == list(range(11, 71))
        assert back["pageInfo"]["hasPreviousPage"] is True and back["pageInfo"]["hasNextPage"]
        oldest = (
            await call(
                session, HISTORY, r=room_id, last=100, before=back["pageInfo"]["startCursor"]
            )
        )["messages"]
        assert [e["node"]["seq"] for e in oldest["edges"]] == list(range(1, 11))
        assert oldest["pageInfo"]["hasPreviousPage"] is False
        forward = (
            await call(session, HISTORY, r=room_id, first=5, after=oldest["pageInfo"]["endCursor"])
        )["messages"]
        assert [e["node"]["seq"] for e in forward["edges"]] == [11, 12, 13, 14, 15]
        assert forward["edges"][0]["node"]["text"] == "n 11"
        first = (await call(session, HISTORY, r=room_id, first=3))["messages"]
        assert [e["node"]["seq"] for e in first["edges"]] == [1, 2, 3]
        assert first["pageInfo"]["hasPreviousPage"] is False


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 101},
        {"last": 101},
        {"first": -1},
        {"after": "garbage"},
        {"before": "bXNnOng"},  # a well-formed encoding of a bad seq
        {"first": 5, "last": 5},
    ],
)
async def test_bad_paging_arguments_are_bad_user_input(
    any_server: ServerProcess, variables: dict[str, object]
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, HISTORY, r=room_id, **variables) == "BAD_USER_INPUT"


async def test_read_marker_moves_forward_only_and_counts_unread(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    for i in range(3):
        await send(any_server, alice, room_id, f"m{i}")
    await send(any_server, bob, room_id, "mine")
    room = (await as_user(any_server, bob, ROOM, r=room_id))["room"]
    assert (room["lastReadSeq"], room["unreadCount"]) == (0, 3)
    assert (await as_user(any_server, bob, MARK_READ, r=room_id, s=2))["markRead"] == {
        "lastReadSeq": 2,
        "unreadCount": 1,
    }
    back = (await as_user(any_server, bob, MARK_READ, r=room_id, s=1))["markRead"]
    assert back["lastReadSeq"] == 2
    past_end = (await as_user(any_server, bob, MARK_READ, r=room_id, s=999))["markRead"]
    assert past_end == {"lastReadSeq": 4, "unreadCount": 0}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_subscriber_gets_live_messages_once_in_order(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    async with (
        ws_session(any_server, subprotocol, bob.token) as session,
        subscribed(any_server, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        for i in range(10):
            await send(any_server, alice, room_id, f"live {i}", f"k{i}")
        await send(any_server, alice, room_id, "live 0 again", "k0")  # a retry: not new
        received = [r["messageAdded"] for r in await live.take(10)]
        await send(any_server, alice, room_id, "last")
        received.append((await live.next())["messageAdded"])
        live.assert_idle()
    assert [m["seq"] for m in received] == list(range(1, 12))
    assert [m["text"] for m in received[:3]] == ["live 0", "live 1", "live 2"]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_after_seq_replays_history_then_goes_live(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    # More than one replay batch (100) of history.
    assert await send_many(any_server, alice, room_id, 150, "old") == list(range(1, 151))
    async with (
        ws_session(any_server, subprotocol, bob.token) as session,
        subscribed(any_server, session, MESSAGE_ADDED, r=room_id, after=20) as sub,
    ):
        replayed = await sub.take(130)
        await send(any_server, alice, room_id, "new")
        live = await sub.next()
    assert [r["messageAdded"]["seq"] for r in replayed] == list(range(21, 151))
    assert live["messageAdded"]["seq"] == 151 and live["messageAdded"]["text"] == "new"


async def test_negative_after_seq_is_bad_user_input(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    async with ws_session(any_server, SUBPROTOCOLS[0], bob.token) as session:
        assert await error_code(session, MESSAGE_ADDED, r=room_id, after=-1) == "BAD_USER_INPUT"
