"""What room streams, shared feeds and room lists read from the store.

The store side of ``live.room_stream.RoomHistory``, ``live.room_feeds.FeedHistory``
and ``live.room_lists.RoomListReads``: where a room's messages stand, its stored
messages in seq order, who is in it and who of its viewers is not shown an event
(``services.room_access``), and the viewer's rooms as they are now.
"""

from __future__ import annotations

from collections.abc import Iterable

from beanie import PydanticObjectId

from live.room_stream import STORED_BATCH, Membership
from models import RoomDoc
from pubsub import MessageData, MessageUpdated
from services.accounts import AccountService
from services.joined_rooms import joined_room_ids
from services.message_data import message_data
from services.messages import MessageService
from services.room_access import RoomAccess


class StoredRoomHistory:
    """Room reads for live delivery, on the store."""

    def __init__(
        self, messages: MessageService, accounts: AccountService, access: RoomAccess
    ) -> None:
        self._messages = messages
        self._accounts = accounts
        self._access = access

    async def latest_seq(self, room_id: str) -> int:
        return await self._messages.latest_seq(PydanticObjectId(room_id))

    async def stored_batch(
        self, room_id: str, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        batch = await self._messages.after(
            PydanticObjectId(room_id), after_seq, STORED_BATCH, before_seq
        )
        if not batch:
            return []
        senders = await self._accounts.get_many([message.sender_id for message in batch])
        return [message_data(message, senders.get(message.sender_id)) for message in batch]

    async def membership(self, room_id: str) -> Membership:
        return await self._access.membership(PydanticObjectId(room_id))

    async def hidden_from(self, event: object, viewer_ids: Iterable[str]) -> set[str]:
        return await self._access.hidden_from(event, viewer_ids)

    async def rooms_of(self, viewer_id: str) -> set[str]:
        return set(map(str, await joined_room_ids(PydanticObjectId(viewer_id))))

    async def room_of_member(self, room_id: str, viewer_id: str) -> RoomDoc | None:
        room = await RoomDoc.get(PydanticObjectId(room_id))
        if room is None or PydanticObjectId(viewer_id) not in room.member_ids:
            return None
        return room

    async def is_last(self, event: MessageUpdated) -> bool:
        room_id = PydanticObjectId(event.message.room_id)
        return event.message.seq >= await self._messages.latest_seq(room_id)
