"""Who follows which rooms in the account scenario, and setting that up through the API.

``followers`` users are each in ``per_user`` of ``rooms`` group rooms, every room
holding as many of them (user u is in rooms u, u + s, u + 2s, ... modulo the rooms,
s = rooms // per_user); one more user, the sender, owns every room and follows none.
Socket i belongs to follower i % followers, so each message reaches a known set of
sockets: those of its room's users. The rooms are created by the sender naming their
members, who join by accepting the invitation (they are not the sender's friends, so
no presence flows between them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.load import Plan
from bench.targets import CREATE_GROUP, ROOM_INVITATIONS, Account, Target

ACCEPT = (
    "mutation Accept($id: ID!) { respondToRoomInvitation(invitationId: $id, accept: true) { id } }"
)
# Connections setting up at once: enough to overlap round trips, few enough to leave
# the server's one core to the requests in flight.
SET_UP_CONCURRENCY = 8


def rooms_of_user(user: int, rooms: int, per_user: int) -> list[int]:
    """The room indexes user ``user`` is in: ``per_user`` distinct rooms, spread so
    that every room holds as many users when the users are a multiple of the stride."""
    stride = max(1, rooms // per_user)
    return [(user + step * stride) % rooms for step in range(min(per_user, rooms))]


@dataclass(frozen=True)
class AccountLayout:
    sender: Account
    followers: list[Account]
    rooms: list[str]
    # Per follower, the rooms they are in.
    rooms_of: list[list[str]]
    # Accounts signed up with the others, in no room.
    spare: list[Account]

    def user_of(self, socket: int) -> int:
        return socket % len(self.followers)

    def plans(self, sockets: int, last_seq: dict[str, int]) -> list[Plan]:
        """Per socket, one plan per room of its user (in order, socket after socket):
        a socket's plans are its ``messageAdded`` subscriptions, or the rooms its
        ``events`` subscription carries."""
        plans = []
        for socket in range(sockets):
            user = self.user_of(socket)
            token = self.followers[user].token
            plans += [Plan(token, room, last_seq[room]) for room in self.rooms_of[user]]
        return plans

    def sockets_in(self, sockets: int) -> dict[str, int]:
        """How many of the first ``sockets`` sockets follow each room."""
        counts = dict.fromkeys(self.rooms, 0)
        for socket in range(sockets):
            for room in self.rooms_of[self.user_of(socket)]:
                counts[room] += 1
        return counts


async def build(
    target: Target, followers: int, rooms: int, per_user: int, spare: int = 0
) -> AccountLayout:
    """Signs up the sender, the followers and ``spare`` more accounts (all at once:
    each sign-up hashes a password) and puts each follower in its rooms."""
    sender, *others = await target.sign_up(followers + 1 + spare)
    users, spares = others[:followers], others[followers:]
    indexes = [rooms_of_user(user, rooms, per_user) for user in range(followers)]
    members: list[list[str]] = [[] for _ in range(rooms)]
    for user, own in enumerate(indexes):
        for room in own:
            members[room].append(users[user].id)
    room_ids: list[str] = [""] * rooms
    connection = target.connection()
    try:
        for index in range(rooms):
            variables: dict[str, object] = {
                "title": f"account {index}",
                "memberIds": members[index],
            }
            data = await target.call(connection, CREATE_GROUP, variables, sender.token)
            room_ids[index] = data["createGroupRoom"]["id"]
    finally:
        await connection.close()
    await accept_all(target, users)
    return AccountLayout(
        sender, users, room_ids, [[room_ids[room] for room in own] for own in indexes], spares
    )


async def accept_all(target: Target, accounts: list[Account]) -> None:
    """Each account accepts every invitation it holds (a list gives at most 100 at a
    time: asked again until none is left)."""
    queue: asyncio.Queue[Account] = asyncio.Queue()
    for account in accounts:
        queue.put_nowait(account)

    async def worker() -> None:
        connection = target.connection()
        try:
            while not queue.empty():
                account = queue.get_nowait()
                while pending := (
                    await target.call(connection, ROOM_INVITATIONS, {}, account.token)
                )["roomInvitations"]:
                    for invitation in pending:
                        accept = {"id": invitation["id"]}
                        await target.call(connection, ACCEPT, accept, account.token)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(min(SET_UP_CONCURRENCY, len(accounts)))))


async def own_rooms(target: Target, account: Account, rooms: int) -> list[str]:
    """``rooms`` group rooms the account creates alone (it is their only member)."""
    created: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(rooms):
        queue.put_nowait(index)

    async def worker() -> None:
        connection = target.connection()
        try:
            while not queue.empty():
                index = queue.get_nowait()
                variables: dict[str, object] = {"title": f"own {index}", "memberIds": []}
                data = await target.call(connection, CREATE_GROUP, variables, account.token)
                created.append(data["createGroupRoom"]["id"])
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(min(SET_UP_CONCURRENCY, rooms))))
    return created
