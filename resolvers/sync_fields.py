"""sync: the viewer's rooms that changed since a token, in one call."""

from __future__ import annotations

import strawberry

from resolvers.access import require_viewer
from resolvers.invitation_fields import room_invitation
from schema.context import Info
from schema.sync_types import RoomSync, SyncResult
from schema.types import Message, Room

# The contract's defaults, also taken for an explicit null.
DEFAULT_ROOMS = 50
DEFAULT_MESSAGES_PER_ROOM = 20


async def sync(
    info: Info,
    since: str | None = None,
    rooms: int | None = DEFAULT_ROOMS,
    messages_per_room: int | None = DEFAULT_MESSAGES_PER_ROOM,
) -> SyncResult:
    viewer = await require_viewer(info)
    services = info.context.services
    answer = await services.sync.sync(
        viewer,
        since,
        DEFAULT_ROOMS if rooms is None else rooms,  # an explicit null: the default
        DEFAULT_MESSAGES_PER_ROOM if messages_per_room is None else messages_per_room,
    )
    senders = await services.accounts.get_many(
        [message.sender_id for changes in answer.rooms for message in changes.messages]
    )
    shown = [await room_invitation(info, invitation) for invitation in answer.invitations]
    return SyncResult(
        rooms=[
            RoomSync(
                room=Room.from_doc(changes.room),
                messages=[
                    Message.from_doc(message, senders.get(message.sender_id))
                    for message in changes.messages
                ],
                limited=changes.limited,
            )
            for changes in answer.rooms
        ],
        has_more_rooms=answer.has_more_rooms,
        left_room_ids=[strawberry.ID(str(room_id)) for room_id in answer.left_room_ids],
        invitations=[invitation for invitation in shown if invitation is not None],
        next_token=answer.next_token,
    )
