"""Writes that race on two instances (FerretDB 1.x rewrites a whole document per
update): a send never undoes a leave or an invite, and nothing puts text back into a
deleted message."""

from __future__ import annotations

import asyncio
from typing import Any

from bson import ObjectId
from gql.transport.exceptions import TransportQueryError
from pymongo import AsyncMongoClient

from tests.support.chat import (
    INVITE,
    LEAVE,
    ROOM,
    SEND,
    befriend_all,
    direct_room,
    group_room,
    history_seqs,
)
from tests.support.clients import Account, call, error_code, http_session, sign_up
from tests.support.server import ServerProcess

SENDS = 200
SENDERS = 10
LEAVERS = 10
INVITEES = 10


async def test_sends_racing_leaves_and_invites_on_two_instances_never_undo_them(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    servers = (server_a, server_b)
    owner = await sign_up(server_a)
    senders = [await sign_up(server_a) for _ in range(SENDERS)]
    leavers = [await sign_up(server_a) for _ in range(LEAVERS)]
    invitees = [await sign_up(server_a) for _ in range(INVITEES)]
    room_id = await group_room(server_a, owner, senders + leavers)
    await befriend_all(server_a, owner, invitees)  # invited friends join at once
    sent = 0
    progress = asyncio.Condition()

    async def after_sends(count: int) -> None:
        async with progress:
            await progress.wait_for(lambda: sent >= count)

    async def sender(index: int, account: Account) -> None:
        nonlocal sent
        async with http_session(servers[index % 2], account.token) as session:
            for n in range(SENDS // SENDERS):
                await call(session, SEND, r=room_id, t=f"s{index} {n}", c=f"{index}-{n}")
                async with progress:
                    sent += 1
                    progress.notify_all()

    answers: dict[str, object] = {}

    async def leaver(index: int, account: Account) -> None:
        await after_sends(5 + index * SENDS // (2 * LEAVERS))  # spread over the sends
        async with http_session(servers[index % 2], account.token) as session:
            answers[account.id] = (await call(session, LEAVE, r=room_id))["leaveRoom"]

    async def inviter(index: int, invitee: Account) -> None:
        await after_sends(10 + index * SENDS // (2 * INVITEES))
        async with http_session(servers[(index + 1) % 2], owner.token) as session:
            room = (await call(session, INVITE, r=room_id, u=[invitee.id]))["inviteMembers"]
            answers[invitee.id] = invitee.id in {member["id"] for member in room["members"]}

    async with asyncio.TaskGroup() as group:
        for index, account in enumerate(senders):
            group.create_task(sender(index, account))
        for index, account in enumerate(leavers):
            group.create_task(leaver(index, account))
        for index, account in enumerate(invitees):
            group.create_task(inviter(index, account))
    # Every leave and invite answered that it took effect...
    assert answers == {account.id: True for account in leavers + invitees}
    # ...and is still in effect on both instances, after all the sends.
    expected = {account.id for account in [owner, *senders, *invitees]}
    for server in servers:
        async with http_session(server, owner.token) as session:
            room = (await call(session, ROOM, r=room_id))["room"]
        assert {member["id"] for member in room["members"]} == expected
        for account in leavers:
            async with http_session(server, account.token) as session:
                assert await error_code(session, ROOM, r=room_id) == "FORBIDDEN"
    assert await history_seqs(server_b, invitees[0], room_id) == list(range(1, SENDS + 1))


EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id deleted } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { id deleted text } }"
HISTORY = """
query($r: ID!) { messages(roomId: $r, first: 100) { edges { node { id text deleted } } } }
"""
RACED_MESSAGES = 30


async def edit_or_refused(session: Any, message_id: str, text: str) -> None:
    """An edit, answered with the message or refused because it is deleted by now."""
    try:
        await call(session, EDIT, m=message_id, t=text)
    except TransportQueryError as exc:
        assert exc.errors and exc.errors[0]["extensions"]["code"] == "BAD_USER_INPUT", exc


async def test_edits_racing_deletes_on_two_instances_never_leave_text_in_a_deleted_message(
    server_a: ServerProcess, server_b: ServerProcess, real_env: dict[str, str]
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    async with (
        http_session(server_a, alice.token) as on_a,
        http_session(server_b, alice.token) as on_b,
    ):

        async def race(n: int) -> None:
            # Fresh: its published mark is still to be flushed while it is changed.
            sent = await call(on_a, SEND, r=room_id, t=f"secret {n}", c=f"race-{n}")
            message_id = sent["sendMessage"]["id"]
            async with asyncio.TaskGroup() as group:
                group.create_task(edit_or_refused(on_a, message_id, f"edited on a {n}"))
                group.create_task(edit_or_refused(on_b, message_id, f"edited on b {n}"))
                group.create_task(call(on_b if n % 2 else on_a, DELETE, m=message_id))
                group.create_task(edit_or_refused(on_b, message_id, f"again on b {n}"))

        async with asyncio.TaskGroup() as group:
            for n in range(RACED_MESSAGES):
                group.create_task(race(n))
    # After the published marks of both instances were flushed (the relay flushes
    # them before it looks; the servers' relay runs every half second), nothing
    # deleted has text again: in history on both instances, and in the store.
    for server in (server_a, server_b):
        async with http_session(server, bob.token) as session:
            edges = (await call(session, HISTORY, r=room_id))["messages"]["edges"]
        assert len(edges) == RACED_MESSAGES
        assert all(e["node"]["deleted"] and e["node"]["text"] == "" for e in edges), edges
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        messages = client.get_default_database()["messages"]
        async with asyncio.timeout(30):
            # Until both instances flushed their marks: then no write is pending. Polls
            # the store the servers write: there is no event to await across processes.
            while await messages.count_documents(  # noqa: ASYNC110
                {"room_id": ObjectId(room_id), "published": False}
            ):
                await asyncio.sleep(0.1)
        stored = await messages.find({"room_id": ObjectId(room_id)}).to_list()
    finally:
        await client.close()
    assert len(stored) == RACED_MESSAGES
    assert [(m["deleted"], m["text"]) for m in stored] == [(True, "")] * RACED_MESSAGES
