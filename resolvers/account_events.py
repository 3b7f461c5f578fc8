"""events(since): the viewer's whole account on one subscription.

The rules are ``live.account_stream``'s; this renders what it gives, each with
its token. Authorization: the token must be the viewer's (``AccountStreams.open``),
and the stream gives only events of rooms the viewer is in (or their own).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry
from beanie import PydanticObjectId

from live.account_stream import AccountItem, LeftRoom
from models import RoomInvitationDoc
from pubsub import InvitationReceived, MessageData, RoomAdded
from resolvers.access import require_viewer
from resolvers.invitations import room_invitation
from schema.account_event_types import (
    AccountEvent,
    AccountEventPayload,
    MessageAdded,
    RoomInvited,
    RoomJoined,
    RoomLeft,
)
from schema.context import Info
from schema.types import Message, Room, activity_of


async def events(info: Info, since: str | None = None) -> AsyncGenerator[AccountEvent, None]:
    viewer = await require_viewer(info)
    services = info.context.services
    viewer_id = str(viewer.id)
    streams = services.account_streams
    stream = await streams.open(viewer_id, since)
    async with aclosing(stream.items()) as items:
        async for given in items:
            payload = await _payload(info, given.item)
            if payload is not None:
                yield AccountEvent(token=await streams.token(viewer_id, given), payload=payload)


async def _payload(info: Info, item: AccountItem) -> AccountEventPayload | None:
    """The item as the contract shows it; None when there is nothing left to show
    (a room or an invitation gone since)."""
    if isinstance(item, MessageData):
        return MessageAdded(message=Message.from_data(item))
    if isinstance(item, LeftRoom):
        return RoomLeft(room_id=strawberry.ID(item.room_id))
    if isinstance(item, RoomAdded):
        room = await info.context.services.rooms.room(PydanticObjectId(item.room_id))
        return None if room is None else RoomJoined(room=Room.from_doc(room))
    if isinstance(item, InvitationReceived):
        found = await RoomInvitationDoc.get(PydanticObjectId(item.invitation_id))
        shown = None if found is None else await room_invitation(info, found)
        return None if shown is None else RoomInvited(invitation=shown)
    return activity_of(item)
