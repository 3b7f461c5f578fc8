"""A typed Python client of Plop's GraphQL API, shared by the CLI, tests and benchmarks.

async with PlopClient("http://127.0.0.1:8000/graphql") as plop:
    await plop.log_in("alice", "correct horse")
    sent = await plop.send_message(room_id, "hi")
    async for message in plop.messages(room_id, after_seq=sent.seq - 1):
        ...
"""

from __future__ import annotations

from client.client import (
    DEFAULT_URL,
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    PlopClient,
    Subprotocol,
    new_client_id,
    subprotocol_named,
    websocket_url,
)
from client.credentials import Credentials, delete_credentials, load_credentials, save_credentials
from client.errors import PlopClientError, PlopTransportError
from client.retry import Backoff
from client.types import (
    Attachment,
    AuthPayload,
    MembersChanged,
    Message,
    MessageUpdated,
    ReactionChanged,
    ReactionGroup,
    ReadReceipt,
    Room,
    RoomActivity,
    RoomInvitation,
    RoomKind,
    RoomMembership,
    RoomRole,
    Session,
    TypingEvent,
    User,
)

__all__ = [
    "DEFAULT_URL",
    "LEGACY_WS",
    "SUBPROTOCOLS",
    "TRANSPORT_WS",
    "Attachment",
    "AuthPayload",
    "Backoff",
    "Credentials",
    "MembersChanged",
    "Message",
    "MessageUpdated",
    "PlopClient",
    "PlopClientError",
    "PlopTransportError",
    "ReactionChanged",
    "ReactionGroup",
    "ReadReceipt",
    "Room",
    "RoomActivity",
    "RoomInvitation",
    "RoomKind",
    "RoomMembership",
    "RoomRole",
    "Session",
    "Subprotocol",
    "TypingEvent",
    "User",
    "delete_credentials",
    "load_credentials",
    "new_client_id",
    "save_credentials",
    "subprotocol_named",
    "websocket_url",
]
