"""Message search from Python and from a terminal: ``PlopClient.search_messages`` and
``plop search-messages`` against a real server."""

from __future__ import annotations

import secrets
from contextlib import aclosing
from pathlib import Path

import pytest

from client import Message, PlopClient, PlopClientError
from tests.support.chat import direct_room, send
from tests.support.clients import sign_up, unique_name
from tests.support.server import ServerProcess
from tests.test_cli import PASSWORD, plop, succeeds


async def every(plop_client: PlopClient, query: str, room_id: str | None, size: int) -> list[str]:
    found: list[Message] = []
    async with aclosing(plop_client.search_messages(query, room_id, size)) as results:
        async for message in results:
            found.append(message)
    return [message.text for message in found]


async def test_plop_client_pages_through_every_result(server_a: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    with_bob = await direct_room(server_a, alice, bob)
    with_carol = await direct_room(server_a, alice, carol)
    word = f"w{secrets.token_hex(5)}"
    texts = [f"Réunion {index} {word}" for index in range(5)]
    for index, text in enumerate(texts):
        await send(server_a, alice, with_bob if index % 2 else with_carol, text)
    async with PlopClient(server_a.http_url, alice.token) as plop_client:
        assert await every(plop_client, f"REUNION {word}", None, 2) == texts[::-1]
        assert await every(plop_client, word, with_bob, 1) == [texts[3], texts[1]]
        with pytest.raises(PlopClientError) as refused:
            await every(plop_client, "", None, 20)
        assert refused.value.code == "BAD_USER_INPUT"
    async with PlopClient(server_a.http_url, bob.token) as plop_client:
        with pytest.raises(PlopClientError) as forbidden:
            await every(plop_client, word, with_carol, 20)
        assert forbidden.value.code == "FORBIDDEN"


async def test_plop_search_messages_prints_the_matches(
    server_a: ServerProcess, tmp_path: Path
) -> None:
    bob = await sign_up(server_a)
    username = unique_name("cli")
    await succeeds(
        tmp_path,
        "signup",
        "--url",
        server_a.http_url,
        "--password-stdin",
        username,
        stdin=f"{PASSWORD}\n",
    )
    room_id = (await succeeds(tmp_path, "direct", bob.id)).strip()
    word = f"w{secrets.token_hex(5)}"
    await succeeds(tmp_path, "send", room_id, f"Grüße aus Köln {word}")
    await succeeds(tmp_path, "send", room_id, f"line\tbreak\nköln {word}")
    await succeeds(tmp_path, "send", room_id, f"nothing here {word}")
    printed = await succeeds(tmp_path, "search-messages", f"KOLN {word}")
    assert printed.splitlines() == [
        f"{room_id}\t2\t{username}\tline\\tbreak\\nköln {word}",
        f"{room_id}\t1\t{username}\tGrüße aus Köln {word}",
    ]
    limited = await succeeds(tmp_path, "search-messages", "--room", room_id, "--limit", "1", word)
    assert limited.splitlines() == [f"{room_id}\t3\t{username}\tnothing here {word}"]
    none = await plop(tmp_path, "search-messages", f"absent {word}")
    assert (none.code, none.stdout, none.stderr.strip()) == (
        0,
        "",
        f"no messages match 'absent {word}'",
    )
    refused = await plop(tmp_path, "search-messages", "--room", "0" * 24, word)
    assert refused.code == 1 and "NOT_FOUND" in refused.stderr, refused.stderr
    empty = await plop(tmp_path, "search-messages", "  ")
    assert empty.code == 1 and "BAD_USER_INPUT" in empty.stderr, empty.stderr
