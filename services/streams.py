"""Live streams behind the subscriptions: exactly once, in order, no gaps.

A message stream registers its inbox BEFORE it reads the database, so any message
stored after that read also arrives as an event. It remembers the last seq it
delivered: an event at or below it is a duplicate (broker redelivery, the relay, a
replayed range) and is dropped; an event above last + 1 means events were missed
(an inbox that lagged, a publish that failed) and the gap is read from the database
first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from errors import BadUserInput, Forbidden
from models import RoomDoc, UserDoc
from pubsub import (
    MembersChanged,
    MessageAdded,
    MessageData,
    RoomAdded,
    RoomChanged,
    room_route,
    user_route,
)
from services.accounts import AccountService
from services.fanout import LAGGED, FanoutHub
from services.messages import MessageService, message_data

REPLAY_BATCH = 100


class _RoomId(BaseModel):
    """Projection: a room's id alone."""

    id: PydanticObjectId = Field(alias="_id")


class StreamService:
    """The per-subscription logic of messageAdded, roomAdded and roomUpdated."""

    def __init__(self, hub: FanoutHub, messages: MessageService, accounts: AccountService) -> None:
        self._hub = hub
        self._messages = messages
        self._accounts = accounts

    async def stored_batch(
        self, room_id: PydanticObjectId, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        """Up to REPLAY_BATCH stored messages with after_seq < seq (< before_seq), ascending."""
        batch = await self._messages.after(room_id, after_seq, REPLAY_BATCH, before_seq)
        if not batch:
            return []
        senders = await self._accounts.get_many([message.sender_id for message in batch])
        return [message_data(message, senders.get(message.sender_id)) for message in batch]

    async def stored_messages(
        self, room_id: PydanticObjectId, after_seq: int, before_seq: int | None = None
    ) -> AsyncIterator[MessageData]:
        """Stored messages with after_seq < seq (< before_seq), ascending, in batches."""
        while batch := await self.stored_batch(room_id, after_seq, before_seq):
            for message in batch:
                yield message
            after_seq = batch[-1].seq

    async def message_added(
        self, room: RoomDoc, viewer: UserDoc, after_seq: int | None
    ) -> AsyncIterator[MessageData]:
        """The room's messages after after_seq (or from now), then live, each once."""
        assert room.id is not None
        if after_seq is not None and after_seq < 0:
            raise BadUserInput("afterSeq must be 0 or more")
        viewer_key = str(viewer.id)
        with self._hub.watching(room_route(str(room.id))) as inbox:
            last = after_seq if after_seq is not None else await self._messages.latest_seq(room.id)
            async for message in self.stored_messages(room.id, last):
                yield message
                last = message.seq
            while True:
                event = await inbox.get()
                if event is LAGGED:
                    async for message in self.stored_messages(room.id, last):
                        yield message
                        last = message.seq
                elif isinstance(event, MembersChanged) and viewer_key in event.removed:
                    raise Forbidden("you are no longer a member of this room")
                elif isinstance(event, MessageAdded) and event.message.seq > last:
                    if event.message.seq > last + 1:
                        async for message in self.stored_messages(room.id, last, event.message.seq):
                            yield message
                            last = message.seq
                    yield event.message
                    last = event.message.seq

    @staticmethod
    async def _room_of_member(room_id: str, viewer: UserDoc) -> RoomDoc | None:
        room = await RoomDoc.get(PydanticObjectId(room_id))
        return room if room is not None and viewer.id in room.member_ids else None

    async def room_added(self, viewer: UserDoc) -> AsyncIterator[RoomDoc]:
        """Rooms the viewer is put in from now on."""
        with self._hub.watching(user_route(str(viewer.id))) as inbox:
            while True:
                event = await inbox.get()
                if isinstance(event, RoomAdded) and (
                    room := await self._room_of_member(event.room_id, viewer)
                ):
                    yield room

    async def room_updated(self, viewer: UserDoc) -> AsyncIterator[RoomDoc]:
        """The viewer's rooms as they change: messages, members, read marker."""
        viewer_key = str(viewer.id)
        with self._hub.watching(user_route(viewer_key)) as inbox:
            joined = await RoomDoc.find({"member_ids": viewer.id}).project(_RoomId).to_list()
            for each in joined:
                self._hub.watch(inbox, room_route(str(each.id)))
            while True:
                event = await inbox.get()
                if event is LAGGED:
                    continue  # the room list is refetched by clients; nothing to replay
                if isinstance(event, RoomAdded):
                    self._hub.watch(inbox, room_route(event.room_id))
                if isinstance(event, MembersChanged) and viewer_key in event.removed:
                    self._hub.unwatch(inbox, room_route(event.room_id))
                    continue
                if isinstance(event, MessageAdded | MembersChanged | RoomAdded | RoomChanged) and (
                    room := await self._room_of_member(event.room_id, viewer)
                ):
                    yield room
