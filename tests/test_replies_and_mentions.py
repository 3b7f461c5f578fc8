"""Replies name a message of the same room and show the original as it stands;
mentions name members only, count until read, and push even in a muted room."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.chat import (
    MARK_READ,
    REGISTER_DEVICE,
    as_user,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.rich_messages import (
    ADD_REACTION,
    DELETE,
    MENTION_COUNT,
    RICH_FIELDS,
    RICH_HISTORY,
    SEND_RICH,
    rich_history,
    send_rich,
)
from tests.support.server import ServerProcess
from tests.test_query_cost import round_trips

MUTE = "mutation($r: ID!) { muteRoom(roomId: $r, until: null) { mutedUntil } }"
EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id } }"
RICH_ADDED = f"subscription($r: ID!) {{ messageAdded(roomId: $r) {{ {RICH_FIELDS} }} }}"


async def test_a_reply_shows_its_original_as_it_stands(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    original = await send(server_a, alice, room_id, "the question")
    reply = await send_rich(server_b, bob, room_id, "the answer", reply_to=original["id"])
    assert reply["replyTo"] == {
        "id": original["id"],
        "seq": 1,
        "text": "the question",
        "deleted": False,
        "sender": {"id": alice.id},
    }
    await as_user(server_a, alice, EDIT, m=original["id"], t="the better question")
    _, stored = await rich_history(server_b, bob, room_id)
    assert stored["replyTo"]["text"] == "the better question"

    await as_user(server_a, alice, DELETE, m=original["id"])
    first, stored = await rich_history(server_b, bob, room_id)
    assert (first["deleted"], first["text"]) == (True, "")
    assert stored["replyTo"] == {
        "id": original["id"],
        "seq": 1,
        "text": "",
        "deleted": True,
        "sender": {"id": alice.id},
    }
    assert stored["text"] == "the answer"  # the original's text was never in the reply


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_reply_arrives_live_with_its_original(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    original = await send(server_a, alice, room_id, "ping")
    async with (
        ws_session(server_b, subprotocol, alice.token) as session,
        subscribed(server_b, session, RICH_ADDED, r=room_id) as added,
    ):
        await send_rich(server_a, bob, room_id, f"pong @{alice.username}", reply_to=original["id"])
        live = (await added.next())["messageAdded"]
    assert live["replyTo"]["text"] == "ping"
    assert live["mentions"] == [{"id": alice.id, "username": alice.username}]


async def test_a_reply_names_a_message_of_the_same_room(server_a: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await direct_room(server_a, alice, bob)
    other_room = await direct_room(server_a, alice, carol)
    elsewhere = await send(server_a, alice, other_room, "in another room")
    strangers_room = await direct_room(server_a, carol, await sign_up(server_a))
    strangers = await send(server_a, carol, strangers_room, "not yours")
    async with http_session(server_a, alice.token) as session:
        for reply_to in (elsewhere["id"], strangers["id"], "0" * 24, "nope"):
            code = await error_code(session, SEND_RICH, r=room_id, t="re", to=reply_to)
            assert code == "BAD_USER_INPUT", reply_to
        assert await error_code(session, SEND_RICH, r=room_id, t="re", to=12) == "BAD_USER_INPUT"
    assert await rich_history(server_a, alice, room_id) == []  # nothing was stored


async def test_mentions_are_of_members_only(any_server: ServerProcess) -> None:
    alice, bob, carol, outsider = [await sign_up(any_server) for _ in range(4)]
    room_id = await group_room(any_server, alice, [bob, carol])
    text = (
        f"hi @{bob.username.upper()}, @{outsider.username} and @nobody_here; "
        f"mail {carol.username}@example.com or ask @{carol.username}."
    )
    sent = await send_rich(any_server, alice, room_id, text)
    assert sorted(user["id"] for user in sent["mentions"]) == sorted([bob.id, carol.id])
    plain = await send_rich(any_server, alice, room_id, f"{bob.username} without an at")
    assert plain["mentions"] == []
    first, second = await rich_history(any_server, bob, room_id)
    assert first["mentions"] == sent["mentions"] and second["mentions"] == []


async def test_mention_count_goes_down_when_read(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob, carol])
    await send(server_a, alice, room_id, "no mention")
    await send(server_a, alice, room_id, f"@{bob.username} look")
    await send(server_b, carol, room_id, f"@{bob.username} @{carol.username} and again")
    deleted = await send(server_a, alice, room_id, f"@{bob.username} never mind")
    await as_user(server_a, alice, DELETE, m=deleted["id"])
    await send(server_a, bob, room_id, f"@{bob.username} talking to myself")
    room = (await as_user(server_b, bob, MENTION_COUNT, r=room_id))["room"]
    assert room == {"unreadCount": 4, "mentionCount": 2}
    assert (await as_user(server_b, carol, MENTION_COUNT, r=room_id))["room"]["mentionCount"] == 0
    await as_user(server_a, bob, MARK_READ, r=room_id, s=2)
    assert (await as_user(server_b, bob, MENTION_COUNT, r=room_id))["room"]["mentionCount"] == 1
    await as_user(server_a, bob, MARK_READ, r=room_id, s=5)
    assert (await as_user(server_b, bob, MENTION_COUNT, r=room_id))["room"]["mentionCount"] == 0


async def test_an_edit_that_adds_a_mention_counts_it(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, alice, [bob])
    sent = await send(any_server, alice, room_id, "hey you")
    await as_user(any_server, alice, EDIT, m=sent["id"], t=f"hey @{bob.username}")
    (stored,) = await rich_history(any_server, bob, room_id)
    assert stored["mentions"] == [{"id": bob.id, "username": bob.username}]
    room = (await as_user(any_server, bob, MENTION_COUNT, r=room_id))["room"]
    assert room["mentionCount"] == 1


async def page_round_trips(
    server: ServerProcess, reader: Account, room_id: str, last: int
) -> float:
    await as_user(server, reader, "{ me { id } }")  # the viewer's document, read fresh
    before = await round_trips(server, "messages")
    page = (await as_user(server, reader, RICH_HISTORY, r=room_id, last=last))["messages"]
    after = await round_trips(server, "messages")
    assert len(page["edges"]) == last
    for edge in page["edges"]:
        node = edge["node"]
        assert node["replyTo"]["seq"] == 1 and node["reactions"][0]["count"] == 1
    return after["mongo"] - before["mongo"]


async def test_a_page_of_replies_reactions_and_mentions_takes_the_same_round_trips(
    server_a: ServerProcess,
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    original = await send(server_a, alice, room_id, "first")
    async with http_session(server_a, bob.token) as session:
        sent = [
            (
                await call(
                    session, SEND_RICH, r=room_id, t=f"@{alice.username} {i}", to=original["id"]
                )
            )["sendMessage"]
            for i in range(40)
        ]
        await asyncio.gather(*(call(session, ADD_REACTION, m=m["id"], e="👍") for m in sent))
    small, large = [await page_round_trips(server_a, alice, room_id, last) for last in (5, 40)]
    # The same reads for 5 messages or 40 (no read per message). One may differ: the
    # senders' documents are kept a moment (services/accounts.py), so a page may find
    # them kept where the other read them.
    assert abs(small - large) <= 1 and 0 < large <= 12


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("mention-push")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pusher(real_env: dict[str, str], receiver: PushReceiver) -> AsyncIterator[ServerProcess]:
    async with webhook_pusher("mentions", real_env, receiver) as server:
        yield server


async def test_a_mention_is_pushed_even_in_a_muted_room(
    pusher: ServerProcess, receiver: PushReceiver, server_a: ServerProcess
) -> None:
    alice, muted, witness = [await sign_up(pusher) for _ in range(3)]
    room_id = await group_room(pusher, alice, [muted, witness])
    devices: dict[str, str] = {}
    for account in (muted, witness):
        devices[account.id] = f"device-{account.id}"
        await as_user(pusher, account, REGISTER_DEVICE, p="WEBHOOK", t=devices[account.id])
    await as_user(server_a, muted, MUTE, r=room_id)
    await send(server_a, alice, room_id, "for everyone")
    await send(server_a, alice, room_id, f"@{muted.username} this one is for you")
    await send(server_a, alice, room_id, f"@{witness.username} and this for you")
    # A room's messages are pushed in order, each to all its devices before the next.
    await receiver.wait_for(3, devices[witness.id])
    (push,) = receiver.for_token(devices[muted.id])
    assert push.body == f"@{muted.username} this one is for you"
