"""Live streams behind the subscriptions: messageAdded and roomActivity per subscriber,
roomAdded, roomUpdated, and the store reads every room stream shares.

The rules of a room's message stream live in ``services.room_stream``; this module
reads the store for it and ends a viewer's stream when it loses access.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from contextlib import AsyncExitStack

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from errors import BadUserInput, Forbidden, NotFound
from models import RoomDoc, UserDoc
from pubsub import (
    MembersChanged,
    MessageAdded,
    MessageData,
    MessageUpdated,
    ReadReceipt,
    RoomAdded,
    RoomChanged,
    TypingChanged,
    room_route,
    user_route,
)
from services.accounts import AccountService
from services.blocks import BlockService
from services.fanout import LAGGED, FanoutHub, Inbox
from services.fresh_reads import FreshReads
from services.joined_rooms import joined_room_ids
from services.message_data import message_data
from services.messages import MessageService
from services.room_stream import Access, Membership, RoomActivity, RoomStream

REPLAY_BATCH = 100
NO_LONGER_A_MEMBER = "you are no longer a member of this room"


class _Members(BaseModel):
    """Projection: who is in a room."""

    id: PydanticObjectId = Field(alias="_id")
    member_ids: list[PydanticObjectId]
    members_tag: str | None = None


def checked_after_seq(after_seq: int | None) -> int | None:
    if after_seq is not None and after_seq < 0:
        raise BadUserInput("afterSeq must be 0 or more")
    return after_seq


class StreamService:
    """The per-subscription logic of messageAdded, roomActivity, roomAdded and roomUpdated."""

    def __init__(
        self,
        hub: FanoutHub,
        messages: MessageService,
        accounts: AccountService,
        blocks: BlockService,
        recheck_seconds: float,
    ) -> None:
        self.hub = hub
        self._messages = messages
        self._accounts = accounts
        self._blocks = blocks
        self.recheck_seconds = recheck_seconds
        # A reconnect storm subscribes thousands of sockets to the same few rooms:
        # their reads share batches, each started after its asks (services.fresh_reads).
        self._rooms: FreshReads[PydanticObjectId, RoomDoc] = FreshReads(self._read_rooms)
        self._memberships: FreshReads[PydanticObjectId, Membership] = FreshReads(
            self._read_memberships
        )

    async def subscribable_room(self, room_id: PydanticObjectId, viewer: UserDoc) -> RoomDoc:
        """The room a subscription follows; NOT_FOUND if there is none, FORBIDDEN if
        the viewer is not in it (as ``RoomService.require_member``, read as fresh)."""
        room = await self._rooms.get(room_id)
        if room is None:
            raise NotFound("no such room")
        if viewer.id not in room.member_ids:
            raise Forbidden("you are not a member of this room")
        return room

    @staticmethod
    async def _read_rooms(room_ids: list[PydanticObjectId]) -> dict[PydanticObjectId, RoomDoc]:
        rooms = await RoomDoc.find({"_id": {"$in": room_ids}}).to_list()
        return {room.id: room for room in rooms if room.id is not None}

    @staticmethod
    async def _read_memberships(
        room_ids: list[PydanticObjectId],
    ) -> dict[PydanticObjectId, Membership]:
        found = await RoomDoc.find({"_id": {"$in": room_ids}}).project(_Members).to_list()
        return {
            room.id: Membership(frozenset(map(str, room.member_ids)), room.members_tag)
            for room in found
        }

    # The store reads of every room stream (``services.room_stream.RoomHistory``).

    async def latest_seq(self, room_id: PydanticObjectId) -> int:
        return await self._messages.latest_seq(room_id)

    async def stored_batch(
        self, room_id: PydanticObjectId, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        """Up to REPLAY_BATCH stored messages with after_seq < seq (< before_seq), ascending."""
        batch = await self._messages.after(room_id, after_seq, REPLAY_BATCH, before_seq)
        if not batch:
            return []
        senders = await self._accounts.get_many([message.sender_id for message in batch])
        return [message_data(message, senders.get(message.sender_id)) for message in batch]

    async def membership(self, room_id: PydanticObjectId) -> Membership:
        found = await self._memberships.get(room_id)
        return Membership(frozenset(), None) if found is None else found

    async def open_room(
        self,
        stack: AsyncExitStack,
        room_id: PydanticObjectId,
        after_seq: int | None,
        *,
        subscription: bool = True,
        messages: bool = True,
    ) -> RoomStream:
        """A room stream from after_seq (None: from now), closed with the stack;
        ``messages=False`` for its activity alone."""
        return await RoomStream.open(
            stack,
            self.hub,
            self,
            room_id,
            checked_after_seq(after_seq),
            self.recheck_seconds,
            subscription=subscription,
            messages=messages,
        )

    async def message_added(
        self, room: RoomDoc, viewer: UserDoc, after_seq: int | None
    ) -> AsyncGenerator[MessageData, None]:
        """The room's messages after after_seq (or from now), then live, each once;
        ends FORBIDDEN once the viewer is no longer in the room."""
        assert room.id is not None
        viewer_key = str(viewer.id)
        async with AsyncExitStack() as stack:
            stream = await self.open_room(stack, room.id, after_seq)
            async for step in stream.steps():
                if isinstance(step, Access):
                    if not step.allows(viewer_key):
                        raise Forbidden(NO_LONGER_A_MEMBER)
                elif isinstance(step, MessageData):
                    yield step

    async def room_activity(
        self, room: RoomDoc, viewer: UserDoc
    ) -> AsyncGenerator[RoomActivity, None]:
        """The room's activity from now on (edits, deletes, typing, receipts, members),
        in order; ends FORBIDDEN once the viewer is no longer in the room."""
        assert room.id is not None
        viewer_key = str(viewer.id)
        async with AsyncExitStack() as stack:
            stream = await self.open_room(stack, room.id, None, messages=False)
            async for step in stream.steps():
                if isinstance(step, Access):
                    if not step.allows(viewer_key):
                        raise Forbidden(NO_LONGER_A_MEMBER)
                elif not isinstance(step, MessageData) and not await self.hidden_from(
                    step, [viewer_key]
                ):
                    yield step

    async def hidden_from(self, event: RoomActivity, viewer_ids: Iterable[str]) -> set[str]:
        """Those of the viewers who are not shown this event: the typing and read
        receipts of a user they block (in a group they share; a DIRECT room the block
        closed has none)."""
        if not isinstance(event, TypingChanged | ReadReceipt):
            return set()
        if not PydanticObjectId.is_valid(event.user_id):
            return set()
        viewers = [PydanticObjectId(each) for each in viewer_ids]
        blockers = await self._blocks.blockers_of(PydanticObjectId(event.user_id), viewers)
        return {str(blocker) for blocker in blockers}

    @staticmethod
    async def _room_of_member(room_id: str, viewer: UserDoc) -> RoomDoc | None:
        room = await RoomDoc.get(PydanticObjectId(room_id))
        return room if room is not None and viewer.id in room.member_ids else None

    async def room_added(self, viewer: UserDoc) -> AsyncGenerator[RoomDoc, None]:
        """Rooms the viewer is put in from now on."""
        with self.hub.watching(user_route(str(viewer.id))) as inbox:
            while True:
                event = await inbox.get()
                if isinstance(event, RoomAdded) and (
                    room := await self._room_of_member(event.room_id, viewer)
                ):
                    yield room

    async def room_updated(self, viewer: UserDoc) -> AsyncGenerator[RoomDoc, None]:
        """The viewer's rooms as they change: messages, members, read marker."""
        viewer_key = str(viewer.id)
        # Active (counted) once it watches the viewer's rooms: a change made after the
        # count rose must reach it.
        with self.hub.watching(user_route(viewer_key), subscription=False) as inbox:
            await self._watch_joined_rooms(inbox, viewer)
            with self.hub.counted():
                while True:
                    event = await inbox.get()
                    if event is LAGGED:
                        # What was dropped may have been a join or a leave: watch again
                        # exactly the rooms the viewer is in now. Clients refetch the list.
                        await self._watch_joined_rooms(inbox, viewer)
                        continue
                    if isinstance(event, RoomAdded):
                        self.hub.watch(inbox, room_route(event.room_id))
                    if isinstance(event, MembersChanged) and viewer_key in event.removed:
                        self.hub.unwatch(inbox, room_route(event.room_id))
                        continue
                    if isinstance(event, MessageUpdated) and not await self._is_last(event):
                        continue
                    if isinstance(
                        event,
                        MessageAdded | MessageUpdated | MembersChanged | RoomAdded | RoomChanged,
                    ) and (room := await self._room_of_member(event.room_id, viewer)):
                        yield room

    async def _is_last(self, event: MessageUpdated) -> bool:
        """Whether an edited or deleted message is its room's lastMessage."""
        room_id = PydanticObjectId(event.message.room_id)
        return event.message.seq >= await self._messages.latest_seq(room_id)

    async def _watch_joined_rooms(self, inbox: Inbox, viewer: UserDoc) -> None:
        """Makes the inbox watch the viewer's own route and exactly the rooms they are in."""
        assert viewer.id is not None
        joined = await joined_room_ids(viewer.id)
        wanted = {user_route(str(viewer.id))} | {room_route(str(each)) for each in joined}
        for route in inbox.routes - wanted:
            self.hub.unwatch(inbox, route)
        for route in wanted - inbox.routes:
            self.hub.watch(inbox, route)
