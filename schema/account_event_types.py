"""The account stream's types (contract v1.2): ``AccountEvent`` and its payloads."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.types import (
    MembersChanged,
    Message,
    MessageUpdated,
    ReactionChanged,
    ReadReceipt,
    Room,
    RoomInvitation,
    TypingEvent,
)


@strawberry.type
class MessageAdded:
    message: Message


@strawberry.type
class RoomJoined:
    room: Room


@strawberry.type
class RoomLeft:
    room_id: strawberry.ID


@strawberry.type
class RoomInvited:
    invitation: RoomInvitation


AccountEventPayload = Annotated[
    MessageAdded
    | MessageUpdated
    | ReactionChanged
    | TypingEvent
    | ReadReceipt
    | MembersChanged
    | RoomJoined
    | RoomLeft
    | RoomInvited,
    strawberry.union("AccountEventPayload"),
]


@strawberry.type(description="v1.2. One event of the viewer's account stream.")
class AccountEvent:
    token: str = strawberry.field(description="Pass as `since` to resume right after this event.")
    payload: AccountEventPayload
