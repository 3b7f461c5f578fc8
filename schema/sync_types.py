"""The types of the sync query: the rooms that changed, and where the account stands."""

from __future__ import annotations

import strawberry

from schema.types import Message, Room, RoomInvitation


@strawberry.type(description="v1.2.")
class RoomSync:
    room: Room
    messages: list[Message] = strawberry.field(
        description=(
            "Messages after the token, ascending seq: the newest `messagesPerRoom` of them."
        )
    )
    limited: bool = strawberry.field(
        description=(
            "True when older messages after the token were left out: page them with "
            "messages(before:)."
        )
    )


@strawberry.type(description="v1.2.")
class SyncResult:
    rooms: list[RoomSync] = strawberry.field(
        description=(
            "Rooms that changed after the token (all the viewer's rooms with no token), "
            "most recent activity first."
        )
    )
    has_more_rooms: bool = strawberry.field(
        description="More changed rooms than `rooms` asked for: the rest are on rooms(...)."
    )
    left_room_ids: list[strawberry.ID] = strawberry.field(
        description="Rooms the viewer left or was removed from after the token."
    )
    invitations: list[RoomInvitation] = strawberry.field(description="Pending group invitations.")
    next_token: str = strawberry.field(
        description=(
            "Pass as `since` to the next sync or to the events subscription. At most 512 "
            "characters, whatever the number of rooms."
        )
    )
