"""Two people chat through Plop, from Python: ``python examples/chat.py [URL]``.

Needs a running server (``plop serve``; URL defaults to http://127.0.0.1:8000/graphql)
and Plop installed (``pip install -e .``), which provides the ``client`` package.
Alice and Bob sign up, Alice finds Bob with ``searchUsers`` and opens a direct room
with him, Bob follows the room live over a WebSocket, and Alice says hello.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from contextlib import aclosing

from client import DEFAULT_URL, Message, PlopClient

PASSWORD = "correct horse battery"
# Every network wait is bounded, this one too: the reply should come within seconds.
RECEIVE_TIMEOUT_SECONDS = 20.0


async def chat(url: str) -> Message:
    """Runs the conversation; returns the message as Bob received it."""
    suffix = secrets.token_hex(3)  # fresh names, so the example runs again and again
    async with PlopClient(url) as alice, PlopClient(url) as bob:
        await alice.sign_up(f"alice_{suffix}", PASSWORD, "Alice")
        await bob.sign_up(f"bob_{suffix}", PASSWORD, "Bob")

        (found,) = await alice.search_users(f"bob_{suffix}")
        room = await alice.create_direct_room(found.id)
        print(f"Alice opened room {room.id} with {found.username} (user id {found.id})")

        # afterSeq=0: Bob's subscription starts with whatever the room already holds,
        # so nothing sent before it was registered on the server is missed.
        async with aclosing(bob.messages(room.id, after_seq=0)) as incoming:
            sent = await alice.send_message(room.id, "Hello, Bob!")
            print(f"Alice sent seq {sent.seq}")
            async with asyncio.timeout(RECEIVE_TIMEOUT_SECONDS):
                received = await anext(incoming)
        print(f"Bob received seq {received.seq} from {received.sender.username}: {received.text}")
        return received


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL
    asyncio.run(chat(url))


if __name__ == "__main__":
    main()
