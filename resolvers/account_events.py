"""events(since): the viewer's whole account on one subscription.

The rules are ``live.account_stream``'s. Once the stream is open (the token checked:
it must be the viewer's, ``AccountStreams.open``), it is handed to the socket's
operation (``schema.live.LiveOperation``), which gives each event with its token,
rendered once for every account stream of the instance that renders alike
(``live.account_feed``); this resolver never yields. It says how an event shows
(``_payload``). The stream gives only events of rooms the viewer is in (or their own).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from beanie import PydanticObjectId

from errors import BadUserInput
from live.account_stream import AccountItem, LeftRoom
from models import RoomInvitationDoc
from pubsub import InvitationReceived, MessageData, RoomAdded
from resolvers.access import require_viewer
from resolvers.invitation_fields import shown_invitation
from resolvers.subscriptions import OVER_WEBSOCKET_ONLY
from schema.account_event_types import (
    AccountEvent,
    AccountEventPayload,
    MessageAdded,
    RoomInvited,
    RoomJoined,
    RoomLeft,
)
from schema.context import Context, Info
from schema.live import LiveOperation
from schema.types import Message, Room, activity_of


async def events(info: Info, since: str | None = None) -> AsyncGenerator[AccountEvent, None]:
    viewer = await require_viewer(info)
    live = info.root_value
    if not isinstance(live, LiveOperation):
        raise BadUserInput(OVER_WEBSOCKET_ONLY)
    viewer_id = str(viewer.id)
    streams = info.context.services.account_streams
    stream = await streams.open(viewer_id, since)
    context = info.context
    live.follow_account(
        stream,
        lambda item: _payload(context, item),
        lambda given: streams.token(viewer_id, given),
    )
    handed: tuple[AccountEvent, ...] = ()  # nothing to yield: the socket delivers
    for event in handed:
        yield event


async def _payload(context: Context, item: AccountItem) -> AccountEventPayload | None:
    """The item as the contract shows it; None when there is nothing left to show
    (a room or an invitation gone since)."""
    if isinstance(item, MessageData):
        return MessageAdded(message=Message.from_data(item))
    if isinstance(item, LeftRoom):
        return RoomLeft(room_id=strawberry.ID(item.room_id))
    if isinstance(item, RoomAdded):
        room = await context.services.rooms.room(PydanticObjectId(item.room_id))
        return None if room is None else RoomJoined(room=Room.from_doc(room))
    if isinstance(item, InvitationReceived):
        found = await RoomInvitationDoc.get(PydanticObjectId(item.invitation_id))
        shown = None if found is None else await shown_invitation(context, found)
        return None if shown is None else RoomInvited(invitation=shown)
    return activity_of(item)
