"""Sockets that subscribe at the same moment (a reconnect storm) are each authorized
by the membership as it stands when they ask, though their reads are shared.

Members, a member who has just left, an outsider and a subscriber to a room that
does not exist all subscribe to messageAdded at once: every member gets the room's
message exactly once; the leaver and the outsider are refused FORBIDDEN, the
unknown room NOT_FOUND.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.support.chat import LEAVE, MESSAGE_ADDED, as_user, group_room, send
from tests.support.clients import SUBPROTOCOLS, sign_up
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess

SOCKETS_PER_MEMBER = 4
NO_SUCH_ROOM = "f" * 24


def error_code(frame: dict[str, Any]) -> str | None:
    """The code of the first error a frame carries (either protocol's shape), or None."""
    payload = frame.get("payload")
    if isinstance(payload, dict):
        errors = payload.get("errors") or ([payload] if "extensions" in payload else [])
    else:
        errors = payload if isinstance(payload, list) else []
    for error in errors:
        code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
        if isinstance(code, str):
            return code
    return None


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_subscribers_asking_at_once_are_each_authorized_as_they_ask(
    any_server: ServerProcess, subprotocol: str
) -> None:
    owner = await sign_up(any_server)
    members = [await sign_up(any_server) for _ in range(2)]
    leaver, outsider = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, owner, [*members, leaver])
    await as_user(any_server, leaver, LEAVE, r=room_id)

    async with AsyncExitStack() as stack:

        async def opened(token: str, count: int) -> list[RawSocket]:
            return [
                await stack.enter_async_context(raw_socket(any_server, subprotocol, token))
                for _ in range(count)
            ]

        allowed = [
            socket
            for account in [owner, *members]
            for socket in await opened(account.token, SOCKETS_PER_MEMBER)
        ]
        refused = await opened(leaver.token, 2) + await opened(outsider.token, 2)
        (unknown,) = await opened(owner.token, 1)

        # Every subscribe leaves at once, so that the server reads for all of them together.
        await asyncio.gather(
            *(
                socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
                for socket in allowed
            ),
            *(
                socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
                for socket in refused
            ),
            unknown.subscribe("1", MESSAGE_ADDED, {"r": NO_SUCH_ROOM, "after": 0}),
        )
        codes = [error_code(frame) for frame in await asyncio.gather(*(s.frame() for s in refused))]
        assert codes == ["FORBIDDEN"] * len(refused)
        assert error_code(await unknown.frame()) == "NOT_FOUND"

        sent = await send(any_server, owner, room_id, "to the members")
        firsts = await asyncio.gather(*(socket.frame() for socket in allowed))
        for frame in firsts:
            assert frame["type"] in ("next", "data"), frame
            message = frame["payload"]["data"]["messageAdded"]
            assert (message["seq"], message["text"]) == (sent["seq"], "to the members")
        # Exactly once: nothing follows the message on any member's socket.
        for socket in allowed:
            with pytest.raises(TimeoutError):
                await socket.frame(within=0.2)
