"""Who may send into a room, kept a short while per room for the send path.

Every sendMessage needs the room's members, its membership tag and where its seq
stands. Reading the room document for each send costs a database round trip and a
validation; this keeps what the send path needs per room, for at most the time a
live room stream trusts a membership read (``membership_check_seconds``), and drops
it at once when the room's own events say it changed:

- each kept room is watched on its hub route BEFORE its document is read, so a
  ``MembersChanged`` consumed after the read (a leave or an invite on any instance)
  drops it, and so does a ``MessageAdded`` authorized against another membership
  tag (a change whose own event was lost or is still on its way);
- a leave or an invite served here drops it before the event is even published;
- only a positive answer is served from here: a viewer not among the kept members
  is checked against the store again (an invite on another instance may be newer);
- a read that raced a drop is not kept (a generation counter per room).

The kept seq hint moves forward with every message stored here and every
``MessageAdded`` consumed, so a sender's first try is almost always the free seq.
A stale hint only costs a walk up (``services.messages``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from beanie import PydanticObjectId

from live.hub import FanoutHub
from models import RoomDoc
from models.room import RoomKind
from pubsub import Event, MembersChanged, MessageAdded, room_route

# Rooms kept at most: each costs its member ids and one hub watcher.
MAX_KEPT_ROOMS = 10_000


@dataclass(slots=True)
class SendingRoom:
    """What the send path needs to know of a room, as last read or since learned."""

    id: PydanticObjectId
    kind: RoomKind
    member_ids: frozenset[PydanticObjectId]
    members_tag: str
    seq_hint: int
    expires_at: float


class _RoomWatcher:
    """The hub watcher of one kept room: drops it or moves its hint on its events."""

    __slots__ = ("_cache", "_room_id")

    def __init__(self, cache: MembershipCache, room_id: PydanticObjectId) -> None:
        self._cache = cache
        self._room_id = room_id

    def offer(self, event: Event) -> None:
        if isinstance(event, MembersChanged):
            self._cache.drop(self._room_id)
        elif isinstance(event, MessageAdded):
            self._cache.seen_message(self._room_id, event.message.seq, event.members_tag)

    def missed(self) -> None:
        # A membership change may be among what was missed: read the room again.
        self._cache.drop(self._room_id)


class MembershipCache:
    """Rooms as the send path needs them, each kept until its events or time say not."""

    def __init__(self, hub: FanoutHub, keep_seconds: float, capacity: int = MAX_KEPT_ROOMS) -> None:
        self._hub = hub
        self._keep_seconds = keep_seconds
        self._capacity = capacity
        self._rooms: OrderedDict[PydanticObjectId, SendingRoom] = OrderedDict()
        self._watchers: dict[PydanticObjectId, _RoomWatcher] = {}
        # Bumped on every drop: a read that started before any drop is not kept
        # (one counter for all rooms: drops are rare, and it needs no bookkeeping).
        self._drops = 0

    async def room(
        self,
        room_id: PydanticObjectId,
        viewer_id: PydanticObjectId,
        read: Callable[[PydanticObjectId], Awaitable[RoomDoc | None]],
    ) -> SendingRoom | None:
        """The kept room if the viewer is among its members; else the room as ``read``
        gives it now (None if there is none), kept for the next send."""
        kept = self._rooms.get(room_id)
        if kept is not None and kept.expires_at > time.monotonic() and viewer_id in kept.member_ids:
            return kept
        self._watch(room_id)  # before the read: a change after it drops what it gives
        drops = self._drops
        room = await read(room_id)
        if room is None:
            self.drop(room_id)
            return None
        fresh = self._sending_room(room)
        if self._drops == drops:
            self._keep(fresh)
        return fresh

    def _sending_room(self, room: RoomDoc) -> SendingRoom:
        assert room.id is not None
        earlier = self._rooms.get(room.id)
        return SendingRoom(
            id=room.id,
            kind=room.kind,
            member_ids=frozenset(room.member_ids),
            members_tag=room.members_tag,
            seq_hint=max(room.seq_hint, earlier.seq_hint if earlier is not None else 0),
            expires_at=time.monotonic() + self._keep_seconds,
        )

    def _watch(self, room_id: PydanticObjectId) -> None:
        if room_id not in self._watchers:
            watcher = _RoomWatcher(self, room_id)
            self._watchers[room_id] = watcher
            self._hub.attach(room_route(str(room_id)), watcher)

    def _keep(self, room: SendingRoom) -> None:
        self._rooms.pop(room.id, None)
        self._rooms[room.id] = room
        while len(self._rooms) > self._capacity:
            oldest, _ = self._rooms.popitem(last=False)
            self._unwatch(oldest)

    def _unwatch(self, room_id: PydanticObjectId) -> None:
        if (watcher := self._watchers.pop(room_id, None)) is not None:
            self._hub.detach(room_route(str(room_id)), watcher)

    def drop(self, room_id: PydanticObjectId) -> None:
        """Forgets the room until it is read again (its membership changed)."""
        self._drops += 1
        self._rooms.pop(room_id, None)
        self._unwatch(room_id)

    def seen_message(self, room_id: PydanticObjectId, seq: int, members_tag: str | None) -> None:
        """A message of the room was stored (here or elsewhere): its hint moves up; a
        message authorized against another membership says the members changed."""
        kept = self._rooms.get(room_id)
        if kept is None:
            return
        if members_tag is not None and members_tag != kept.members_tag:
            self.drop(room_id)
        elif seq > kept.seq_hint:
            kept.seq_hint = seq
