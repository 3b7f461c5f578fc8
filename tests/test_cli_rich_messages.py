"""``plop reply`` and ``plop react``, and the same through ``PlopClient``."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

from client import PlopClient, PlopClientError, ReactionChanged, ReactionGroup
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    active_subscriptions,
    sign_up,
    wait_active_subscriptions,
)
from tests.support.server import ServerProcess
from tests.test_cli import plop, signed_up, succeeds
from tests.test_client import settled


async def test_reply_and_react_from_the_terminal(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    alice_config, bob_config = tmp_path / "alice", tmp_path / "bob"
    (_, alice_id), _ = await asyncio.gather(
        signed_up(alice_config, embedded_server, "alice"),
        signed_up(bob_config, embedded_server, "bob"),
    )
    room = (await succeeds(bob_config, "direct", alice_id)).strip()
    seq, first_id = (await succeeds(bob_config, "send", room, "question", "--show-id")).split()
    assert seq == "1"
    reply_seq, reply_id = (await succeeds(alice_config, "reply", room, first_id, "answer")).split()
    assert reply_seq == "2" and reply_id != first_id

    assert await succeeds(alice_config, "react", first_id, "👍") == "👍* 1\n"
    assert await succeeds(bob_config, "react", first_id, "👍🏽") == "👍 1\t👍🏽* 1\n"
    assert await succeeds(bob_config, "react", first_id, "👍") == "👍* 2\t👍🏽* 1\n"
    # Equal counts: the emoji used first (bob's 👍🏽, now that alice's 👍 is gone) first.
    assert await succeeds(alice_config, "react", first_id, "👍", "--remove") == "👍🏽 1\t👍 1\n"

    wrong = await plop(alice_config, "react", first_id, "two words")
    assert wrong.code == 1 and "exactly one emoji" in wrong.stderr
    refused = await plop(alice_config, "reply", room, "0" * 24, "to nothing")
    assert refused.code == 1 and "same room" in refused.stderr


async def test_the_client_replies_and_follows_reactions(embedded_server: ServerProcess) -> None:
    alice, bob = await sign_up(embedded_server), await sign_up(embedded_server)
    async with (
        settled(embedded_server),
        PlopClient(embedded_server.http_url, alice.token) as alice_client,
        PlopClient(embedded_server.http_url, bob.token) as bob_client,
    ):
        room = await alice_client.create_direct_room(bob.id)
        original = await alice_client.send_message(room.id, "ping")
        reply = await bob_client.send_message(room.id, "pong", reply_to_id=original.id)
        assert reply.reply_to_id == original.id and original.reply_to_id is None
        arrived: asyncio.Queue[ReactionChanged] = asyncio.Queue()

        async def follow() -> None:
            async with aclosing(alice_client.activity(room.id, max_attempts=1)) as events:
                async for event in events:
                    if isinstance(event, ReactionChanged):
                        arrived.put_nowait(event)

        before = await active_subscriptions(embedded_server)
        following = asyncio.create_task(follow())
        try:
            await wait_active_subscriptions(embedded_server, before + 1)
            reacted = await bob_client.add_reaction(original.id, "🎉")
            assert reacted.reactions == (ReactionGroup("🎉", 1, True),)
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                event = await arrived.get()
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        assert (event.emoji, event.added, event.user.id) == ("🎉", True, bob.id)
        assert event.message.reactions == (ReactionGroup("🎉", 1, False),)  # alice's view
        removed = await bob_client.remove_reaction(original.id, "🎉")
        assert removed.reactions == ()
        try:
            await bob_client.add_reaction(original.id, "")
        except PlopClientError as error:
            assert error.code == "BAD_USER_INPUT"
        else:
            raise AssertionError("an empty emoji was taken")
