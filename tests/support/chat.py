"""GraphQL documents and small helpers for rooms and messages, as an app would use them."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.clients import Account, call, http_session
from tests.support.server import ServerProcess

MESSAGE_FIELDS = (
    "id roomId seq text clientId createdAt editedAt deleted sender { id username displayName }"
)
# Friend requests in flight at once when a test befriends many users.
BEFRIEND_AT_ONCE = 16
ROOM_FIELDS = "id kind title createdAt lastSeq members { id } lastMessage { seq text }"

CREATE_DIRECT = f"mutation($u: ID!) {{ createDirectRoom(userId: $u) {{ {ROOM_FIELDS} }} }}"
CREATE_GROUP = f"""
mutation($t: String!, $m: [ID!]!) {{
  createGroupRoom(title: $t, memberIds: $m) {{ {ROOM_FIELDS} }}
}}
"""
INVITE = f"""
mutation($r: ID!, $u: [ID!]!) {{ inviteMembers(roomId: $r, userIds: $u) {{ {ROOM_FIELDS} }} }}
"""
LEAVE = "mutation($r: ID!) { leaveRoom(roomId: $r) }"
ROOM = f"query($r: ID!) {{ room(id: $r) {{ {ROOM_FIELDS} lastReadSeq unreadCount }} }}"
ROOMS = f"""
query($first: Int, $after: String) {{
  rooms(first: $first, after: $after) {{
    edges {{ cursor node {{ {ROOM_FIELDS} }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}
"""
SEND = f"""
mutation($r: ID!, $t: String!, $c: String) {{
  sendMessage(roomId: $r, text: $t, clientId: $c) {{ {MESSAGE_FIELDS} }}
}}
"""
MARK_READ = (
    "mutation($r: ID!, $s: Int!) { markRead(roomId: $r, seq: $s) { lastReadSeq unreadCount } }"
)
HISTORY = f"""
query($r: ID!, $first: Int, $after: String, $last: Int, $before: String) {{
  messages(roomId: $r, first: $first, after: $after, last: $last, before: $before) {{
    edges {{ cursor node {{ {MESSAGE_FIELDS} }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}
"""
MESSAGE_ADDED = f"""
subscription($r: ID!, $after: Int) {{
  messageAdded(roomId: $r, afterSeq: $after) {{ {MESSAGE_FIELDS} }}
}}
"""
ROOM_ADDED = f"subscription {{ roomAdded {{ {ROOM_FIELDS} }} }}"
ROOM_UPDATED = f"subscription {{ roomUpdated {{ {ROOM_FIELDS} }} }}"


async def as_user(server: ServerProcess, account: Account, query: str, **variables: Any) -> Any:
    """One operation over HTTP as this user; returns ``data``."""
    async with http_session(server, account.token) as session:
        return await call(session, query, **variables)


async def direct_room(server: ServerProcess, me: Account, other: Account) -> str:
    room_id: str = (await as_user(server, me, CREATE_DIRECT, u=other.id))["createDirectRoom"]["id"]
    return room_id


async def group_room(
    server: ServerProcess, me: Account, members: list[Account], title: str = "g"
) -> str:
    """A GROUP room of ``me`` and the members, all in it at once: the members are made
    friends of ``me`` first (a stranger would get an invitation instead)."""
    await befriend_all(server, me, members)
    data = await as_user(server, me, CREATE_GROUP, t=title, m=[member.id for member in members])
    room_id: str = data["createGroupRoom"]["id"]
    return room_id


async def send(
    server: ServerProcess, sender: Account, room_id: str, text: str, client_id: str | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = (await as_user(server, sender, SEND, r=room_id, t=text, c=client_id))[
        "sendMessage"
    ]
    return message


async def send_many(
    server: ServerProcess, sender: Account, room_id: str, count: int, prefix: str = "m"
) -> list[int]:
    """Sends ``count`` messages one after another over one connection; returns their seqs."""
    async with http_session(server, sender.token) as session:
        return [
            (await call(session, SEND, r=room_id, t=f"{prefix} {i}", c=None))["sendMessage"]["seq"]
            for i in range(1, count + 1)
        ]


async def history_seqs(server: ServerProcess, reader: Account, room_id: str) -> list[int]:
    """Every seq in the room's history, paging forward 100 at a time."""
    seqs: list[int] = []
    after: str | None = None
    async with http_session(server, reader.token) as session:
        while True:
            page = (await call(session, HISTORY, r=room_id, first=100, after=after))["messages"]
            seqs.extend(edge["node"]["seq"] for edge in page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                return seqs
            after = page["pageInfo"]["endCursor"]


USER_FIELDS = "id username displayName presence { userId status lastSeenAt }"
REQUEST_FIELDS = "id status createdAt from { id } to { id }"
SEARCH = "query($q: String!, $first: Int) { searchUsers(query: $q, first: $first) { id username } }"
FRIENDS = f"{{ friends {{ {USER_FIELDS} }} }}"
FRIEND_REQUESTS = f"{{ friendRequests {{ {REQUEST_FIELDS} }} }}"
SEND_FRIEND_REQUEST = (
    f"mutation($u: ID!) {{ sendFriendRequest(userId: $u) {{ {REQUEST_FIELDS} }} }}"
)
RESPOND = f"""
mutation($r: ID!, $a: Boolean!) {{
  respondToFriendRequest(requestId: $r, accept: $a) {{ {REQUEST_FIELDS} }}
}}
"""
REMOVE_FRIEND = "mutation($u: ID!) { removeFriend(userId: $u) }"
USER_PRESENCE = "query($u: ID!) { user(id: $u) { id presence { userId status lastSeenAt } } }"
PRESENCE_CHANGED = "subscription { presenceChanged { userId status lastSeenAt } }"


async def befriend(server: ServerProcess, first: Account, second: Account) -> None:
    """Makes the two users friends: one asks, the other accepts."""
    request = (await as_user(server, first, SEND_FRIEND_REQUEST, u=second.id))["sendFriendRequest"]
    await as_user(server, second, RESPOND, r=request["id"], a=True)


async def befriend_all(server: ServerProcess, me: Account, others: list[Account]) -> None:
    """Makes each of the others a friend of ``me`` (those who are not yet): each of
    them asks, ``me`` accepts, so that each spends their own friend-request budget."""
    friends = {user["id"] for user in (await as_user(server, me, FRIENDS))["friends"]}
    strangers = list({other.id: other for other in others if other.id not in friends}.values())
    for start in range(0, len(strangers), BEFRIEND_AT_ONCE):
        batch = strangers[start : start + BEFRIEND_AT_ONCE]
        await asyncio.gather(*(befriend(server, other, me) for other in batch if other.id != me.id))


INVITATION_FIELDS = "id createdAt inviter { id } room { id title memberCount lastSeq }"
INVITATIONS = f"{{ roomInvitations {{ {INVITATION_FIELDS} }} }}"
RESPOND_INVITATION = f"""
mutation($i: ID!, $a: Boolean!) {{
  respondToRoomInvitation(invitationId: $i, accept: $a) {{ {ROOM_FIELDS} }}
}}
"""


async def invitations(server: ServerProcess, account: Account) -> list[dict[str, Any]]:
    """The user's pending group invitations, newest first."""
    found: list[dict[str, Any]] = (await as_user(server, account, INVITATIONS))["roomInvitations"]
    return found


async def accept_invitations(server: ServerProcess, account: Account) -> list[str]:
    """Accepts every pending invitation of the user; returns the rooms joined."""
    async with http_session(server, account.token) as session:
        pending = (await call(session, INVITATIONS))["roomInvitations"]
        answers = await asyncio.gather(
            *(call(session, RESPOND_INVITATION, i=each["id"], a=True) for each in pending)
        )
    return [answer["respondToRoomInvitation"]["id"] for answer in answers]


REGISTER_DEVICE = """
mutation($p: PushPlatform!, $t: String!) {
  registerPushDevice(platform: $p, token: $t) { id platform token createdAt }
}
"""
UNREGISTER_DEVICE = "mutation($t: String!) { unregisterPushDevice(token: $t) }"
