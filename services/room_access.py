"""Who may see and act in a room: the one service every resolver and stream asks.

Each read of who is in a room is made for its use, and each refusal is written
here once:

- ``require_member`` (queries and mutations): the room's own document, read for
  this request, since the caller may go on to change it.
- ``require_writer``: the same, and FORBIDDEN too in a DIRECT room a block closed.
- ``require_sender`` (the send path): the room as a sender needs it, kept a short
  while and dropped by its membership events (``services.membership_cache``).
- ``require_subscriber`` and ``membership`` (subscriptions and room streams): who
  is in the room, read fresh but batched (``services.fresh_reads``), so that a
  reconnect storm of thousands of sockets costs a few reads, each begun after it
  was asked, never an answer older than the ask.
- ``hidden_from``: who of a room's viewers is not shown an event (typing and read
  receipts of a user they block).

A change of members made here (``RoomService``) tells ``members_changed`` before
its event is even published, so this instance refuses a leaver's next send at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from errors import Forbidden, NotFound
from live.room_stream import Membership
from models import RoomDoc, UserDoc
from models.room import RoomKind
from pubsub import ReadReceipt, TypingChanged
from services.blocks import BlockService
from services.fresh_reads import FreshReads
from services.membership_cache import MembershipCache, SendingRoom

NO_SUCH_ROOM = "no such room"
NOT_A_MEMBER = "you are not a member of this room"
# Both users of a blocked DIRECT room know of the block (one of them made it).
CONVERSATION_BLOCKED = (
    "this conversation is blocked: nothing can be sent, typed, edited or marked read "
    "in it until the block is lifted"
)


class _Members(BaseModel):
    """Projection: who is in a room."""

    id: PydanticObjectId = Field(alias="_id")
    member_ids: list[PydanticObjectId]
    members_tag: str | None = None


class RoomAccess:
    """Every check of who may see or act in a room."""

    def __init__(
        self,
        senders: MembershipCache,
        blocks: BlockService,
        read_sending_room: Callable[[PydanticObjectId], Awaitable[RoomDoc | None]],
    ) -> None:
        self._senders = senders
        self._blocks = blocks
        self._read_sending_room = read_sending_room
        self._memberships: FreshReads[PydanticObjectId, Membership] = FreshReads(
            self._read_memberships
        )

    async def require_member(self, room_id: PydanticObjectId, viewer: UserDoc) -> RoomDoc:
        """The room; NOT_FOUND if there is none, FORBIDDEN if the viewer is not in it."""
        room = await RoomDoc.get(room_id)
        if room is None:
            raise NotFound(NO_SUCH_ROOM)
        if viewer.id not in room.member_ids:
            raise Forbidden(NOT_A_MEMBER)
        return room

    async def require_writer(self, room_id: PydanticObjectId, viewer: UserDoc) -> RoomDoc:
        """``require_member`` for what a member does in the room (typing, marking it
        read): FORBIDDEN too in a DIRECT room closed by a block."""
        room = await self.require_member(room_id, viewer)
        await self.require_open(room, viewer)
        return room

    async def require_sender(self, room_id: PydanticObjectId, viewer: UserDoc) -> SendingRoom:
        """``require_writer`` for the send path, from what it keeps of the room."""
        assert viewer.id is not None
        room = await self._senders.room(room_id, viewer.id, self._read_sending_room)
        if room is None:
            raise NotFound(NO_SUCH_ROOM)
        if viewer.id not in room.member_ids:
            raise Forbidden(NOT_A_MEMBER)
        await self.require_open(room, viewer)
        return room

    async def require_subscriber(self, room_id: PydanticObjectId, viewer_id: str) -> None:
        """``require_member`` for a subscription, read fresh in a batch."""
        found = await self._memberships.get(room_id)
        if found is None:
            raise NotFound(NO_SUCH_ROOM)
        if viewer_id not in found.member_ids:
            raise Forbidden(NOT_A_MEMBER)

    async def require_open(self, room: RoomDoc | SendingRoom, viewer: UserDoc) -> None:
        """FORBIDDEN in a DIRECT room where either user blocks the other.

        A DIRECT room cannot be left (only hidden), so a block closes it instead: its
        history stays readable, nothing new goes in, and unblocking opens it again. The
        block is read through its epoch in Redis (``services.blocks``), so it bites at
        once on every instance, whatever the send path keeps of the room.
        """
        if room.kind is not RoomKind.DIRECT:
            return
        others = [member for member in room.member_ids if member != viewer.id]
        assert viewer.id is not None
        if others and await self._blocks.blocked_between(viewer.id, others[0]):
            raise Forbidden(CONVERSATION_BLOCKED)

    async def membership(self, room_id: PydanticObjectId) -> Membership:
        """Who is in the room now, read fresh in a batch (nobody if it is gone)."""
        found = await self._memberships.get(room_id)
        return Membership(frozenset(), None) if found is None else found

    async def hidden_from(self, event: object, viewer_ids: Iterable[str]) -> set[str]:
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

    def members_changed(self, room_id: PydanticObjectId) -> None:
        """Members joined or left here: what the send path keeps of the room goes."""
        self._senders.drop(room_id)

    def message_stored(self, room_id: PydanticObjectId, seq: int) -> None:
        """A message was stored here: the send path's seq hint for the room moves up."""
        self._senders.seen_message(room_id, seq, None)

    @staticmethod
    async def _read_memberships(
        room_ids: list[PydanticObjectId],
    ) -> dict[PydanticObjectId, Membership]:
        found = await RoomDoc.find({"_id": {"$in": room_ids}}).project(_Members).to_list()
        return {
            room.id: Membership(frozenset(map(str, room.member_ids)), room.members_tag)
            for room in found
        }
