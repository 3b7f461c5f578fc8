"""A typed Python client of Plop's GraphQL API, shared by the CLI, tests and benchmarks.

async with PlopClient("http://127.0.0.1:8000/graphql") as plop:
    await plop.log_in("alice", "correct horse")
    sent = await plop.send_message(room_id, "hi")
    async for message in plop.messages(room_id, after_seq=sent.seq - 1):
        ...
    async for event in plop.events(since=saved_token):  # every room of the account
        saved_token = event.token
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
from client.exceptions import PlopClientError, PlopSyncTokenExpired, PlopTransportError
from client.results import (
    AccountEvent,
    AccountEventPayload,
    Attachment,
    AuthPayload,
    MembersChanged,
    Message,
    MessageAdded,
    MessageUpdated,
    ReactionChanged,
    ReactionGroup,
    ReadReceipt,
    Room,
    RoomActivity,
    RoomInvitation,
    RoomInvited,
    RoomJoined,
    RoomKind,
    RoomLeft,
    RoomMembership,
    RoomRole,
    Session,
    TypingEvent,
    User,
)
from client.retry import Backoff

__all__ = [
    "DEFAULT_URL",
    "LEGACY_WS",
    "SUBPROTOCOLS",
    "TRANSPORT_WS",
    "AccountEvent",
    "AccountEventPayload",
    "Attachment",
    "AuthPayload",
    "Backoff",
    "Credentials",
    "MembersChanged",
    "Message",
    "MessageAdded",
    "MessageUpdated",
    "PlopClient",
    "PlopClientError",
    "PlopSyncTokenExpired",
    "PlopTransportError",
    "ReactionChanged",
    "ReactionGroup",
    "ReadReceipt",
    "Room",
    "RoomActivity",
    "RoomInvitation",
    "RoomInvited",
    "RoomJoined",
    "RoomKind",
    "RoomLeft",
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
