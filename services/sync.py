"""sync: everything an app needs to catch up with an account, in one call.

The answer stops at the watermark ``W`` of room event positions
(``services.event_positions``), read before anything else: every message given has
a position at or below ``W`` (or none, stored before positions), and ``nextToken``
says "everything up to ``W`` was given". An event stored later has a position above
``W``, so the account stream started from ``nextToken`` gives it, and each message
reaches the app exactly once, from the sync or from the stream.

Without a token, the answer is the viewer's rooms (as ``rooms`` orders them) with
their newest messages. With one, it is the rooms that changed after it: a message or
a logged change (``RoomEventDoc``) with a position in ``(since.upto, W]`` that the
token does not already hold in ``also``, with the newest messages of that range; and
the rooms the viewer was taken out of in the range.

The number of database round trips does not depend on the number of rooms: each
step reads every room at once (``$in``, or one ``$or`` of per-room seq ranges).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from errors import BadUserInput
from live.account_cursor import Cursor, SyncTokenExpired
from models import MessageDoc, RoomDoc, RoomEventDoc, RoomInvitationDoc, UserDoc
from models.room import MembershipDoc, RoomProgressDoc
from models.time import as_utc
from services.event_positions import EventPositions
from services.invitations import InvitationService
from services.rate_limits import LimitName, RateLimiter
from services.sync_tokens import SyncTokens

MAX_ROOMS = 200
MAX_MESSAGES_PER_ROOM = 100
# Messages read above each room's newest-known seq beyond those asked for: the seq
# hint lags the newest message a little, and messages above the watermark (still in
# flight) are read and left out. A room that still lacks messages is read again
# further down, so this only saves round trips.
SEQ_SLACK = 8
# Documents a read asks for in its first reply: a read of every room (or of their
# messages) comes back in one round trip, not in 101 documents and then the rest in
# a getMore (the server still cuts a reply at 16 MiB).
ONE_REPLY = 100_000
_NEVER = datetime.min.replace(tzinfo=UTC)
_MEMBERS_CHANGED = "members.changed"


class _RoomState(BaseModel):
    """Projection: what ordering and reading a room's messages needs of it."""

    id: PydanticObjectId = Field(alias="_id")
    last_activity_at: datetime
    seq_hint: int = 0


class _Positioned(BaseModel):
    """Projection: a stored message's place."""

    id: PydanticObjectId = Field(alias="_id")
    room_id: PydanticObjectId
    seq: int
    pos: int | None = None


class _LoggedChange(BaseModel):
    """Projection: a logged change's room, position and who it names."""

    room_id: PydanticObjectId
    pos: int
    user_ids: list[PydanticObjectId] = Field(default_factory=list)
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RoomChanges:
    """One room of a sync: its newest messages (ascending seq) and whether older
    ones of the same span were left out."""

    room: RoomDoc
    messages: list[MessageDoc]
    limited: bool


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    rooms: list[RoomChanges]
    has_more_rooms: bool
    left_room_ids: list[PydanticObjectId]
    invitations: list[RoomInvitationDoc]
    next_token: str


class SyncService:
    """The rules of sync; see the module's docstring."""

    def __init__(
        self,
        positions: EventPositions,
        tokens: SyncTokens,
        invitations: InvitationService,
        limits: RateLimiter,
        max_replay_events: int,
    ) -> None:
        self._positions = positions
        self._tokens = tokens
        self._invitations = invitations
        self._limits = limits
        self._max_replay_events = max_replay_events

    async def sync(
        self, viewer: UserDoc, since: str | None, rooms: int, messages_per_room: int
    ) -> SyncAnswer:
        assert viewer.id is not None
        await self._limits.hit(LimitName.SYNC, str(viewer.id))
        if not 1 <= rooms <= MAX_ROOMS:
            raise BadUserInput(f"rooms must be between 1 and {MAX_ROOMS}")
        if not 0 <= messages_per_room <= MAX_MESSAGES_PER_ROOM:
            raise BadUserInput(f"messagesPerRoom must be between 0 and {MAX_MESSAGES_PER_ROOM}")
        cursor = await self._tokens.decode(str(viewer.id), since) if since is not None else None
        # First, before anything is read: what is read next is complete up to here.
        watermark = await self._positions.watermark()
        read_at = time.time()
        states, member_of = await _rooms_in_order(viewer.id)
        left: list[PydanticObjectId] = []
        if cursor is None:
            shown = states
            newest = await _newest_messages(
                {state.id: state.seq_hint for state in states[:rooms]}, watermark, messages_per_room
            )
            upto, also = watermark, frozenset[int]()
        else:
            upto = max(cursor.upto, watermark)
            also = frozenset(pos for pos in cursor.also if pos > upto)
            shown, left, newest = await self._changes(
                viewer.id, cursor, watermark, (states, member_of), rooms, messages_per_room
            )
        page = shown[:rooms]
        docs = await _rooms_by_id([state.id for state in page])
        answer_rooms = [
            RoomChanges(doc, *newest.get(state.id, ([], False)))
            for state in page
            if (doc := docs.get(state.id)) is not None and viewer.id in doc.member_ids
        ]
        return SyncAnswer(
            rooms=answer_rooms,
            has_more_rooms=len(shown) > rooms,
            left_room_ids=left,
            invitations=await self._invitations.pending_for(viewer.id),
            next_token=await self._tokens.encode(
                str(viewer.id), Cursor(upto=upto, at=read_at, also=also)
            ),
        )

    async def _changes(
        self,
        viewer_id: PydanticObjectId,
        cursor: Cursor,
        watermark: int,
        viewer_rooms: tuple[list[_RoomState], set[PydanticObjectId]],
        rooms: int,
        messages_per_room: int,
    ) -> tuple[
        list[_RoomState],
        list[PydanticObjectId],
        dict[PydanticObjectId, tuple[list[MessageDoc], bool]],
    ]:
        """The rooms that changed in ``(cursor.upto, watermark]``, in order; the rooms
        the viewer was taken out of; the newest messages of the range per room."""
        if watermark <= cursor.upto:
            return [], [], {}
        states, member_of = viewer_rooms
        in_range = {"$gt": cursor.upto, "$lte": watermark}
        # One more than a catch-up replays: a token that far behind is expired.
        most = self._max_replay_events + 1
        placed = (
            await MessageDoc.find(
                {"room_id": {"$in": list(member_of)}, "pos": in_range}, batch_size=ONE_REPLY
            )
            .project(_Positioned)
            .limit(most)
            .to_list()
        )
        logged = (
            await RoomEventDoc.find(
                {
                    "$or": [{"room_id": {"$in": list(member_of)}}, {"user_ids": viewer_id}],
                    "pos": in_range,
                },
                batch_size=ONE_REPLY,
            )
            .project(_LoggedChange)
            .limit(most)
            .to_list()
        )
        if len(placed) + len(logged) > self._max_replay_events:
            raise SyncTokenExpired("this sync token is too far behind: start over with sync")
        new_messages: dict[PydanticObjectId, list[_Positioned]] = defaultdict(list)
        for message in placed:
            if message.pos is not None and not cursor.given(message.pos):
                new_messages[message.room_id].append(message)
        changed = set(new_messages)
        left: set[PydanticObjectId] = set()
        for change in logged:
            if cursor.given(change.pos):
                continue
            if change.room_id in member_of:
                changed.add(change.room_id)  # left out below if the viewer hid it
            elif _takes_out(change, viewer_id):
                left.add(change.room_id)
        shown = [state for state in states if state.id in changed]
        wanted: list[PydanticObjectId] = []
        limited: dict[PydanticObjectId, bool] = {}
        for state in shown[:rooms]:
            newest = sorted(new_messages.get(state.id, []), key=lambda m: m.seq)
            kept = newest[max(0, len(newest) - messages_per_room) :] if messages_per_room else []
            wanted += [message.id for message in kept]
            limited[state.id] = len(kept) < len(newest)
        # The rooms only narrow the query to their shards on a cluster sharded by room.
        wanted_rooms = list(limited)
        found = (
            await MessageDoc.find(
                {"room_id": {"$in": wanted_rooms}, "_id": {"$in": wanted}}, batch_size=ONE_REPLY
            ).to_list()
            if wanted
            else []
        )
        by_room: dict[PydanticObjectId, list[MessageDoc]] = defaultdict(list)
        for message in sorted(found, key=lambda m: m.seq):
            by_room[message.room_id].append(message)
        newest_messages = {
            room_id: (by_room.get(room_id, []), limited[room_id]) for room_id in limited
        }
        return shown, sorted(left, key=str), newest_messages


def _takes_out(change: _LoggedChange, viewer_id: PydanticObjectId) -> bool:
    """A logged membership change that names the viewer (a viewer no longer in the
    room was taken out by it or by a later one)."""
    if change.event.get("type") != _MEMBERS_CHANGED:
        return False
    named = {str(user_id) for user_id in change.user_ids}
    named.update(str(user_id) for user_id in change.event.get("removed", ()))
    return str(viewer_id) in named


async def _rooms_in_order(
    viewer_id: PydanticObjectId,
) -> tuple[list[_RoomState], set[PydanticObjectId]]:
    """The viewer's rooms most recent activity first, as the ``rooms`` query lists
    them (a room's activity is the later of its own and its newest message's, and a
    room the viewer hid shows only once a message newer than its hiding arrived);
    and every room the viewer is in, hidden or not."""
    rooms = (
        await RoomDoc.find({"member_ids": viewer_id}, batch_size=ONE_REPLY)
        .project(_RoomState)
        .to_list()
    )
    ids = [room.id for room in rooms]
    progress = (
        await RoomProgressDoc.find({"_id": {"$in": ids}}, batch_size=ONE_REPLY).to_list()
        if ids
        else []
    )
    messages_at = {each.id: as_utc(each.last_activity_at) for each in progress}
    hints = {each.id: each.seq_hint for each in progress}
    hidden_rows = (
        await MembershipDoc.find(
            {"room_id": {"$in": ids}, "user_id": viewer_id, "hidden_at": {"$ne": None}}
        ).to_list()
        if ids
        else []
    )
    hidden = {row.room_id: as_utc(row.hidden_at) for row in hidden_rows if row.hidden_at}
    shown: list[tuple[datetime, str, _RoomState]] = []
    for room in rooms:
        message_at = messages_at.get(room.id, _NEVER)
        if room.id in hidden and message_at <= hidden[room.id]:
            continue
        room.seq_hint = max(room.seq_hint, hints.get(room.id, 0))
        shown.append((max(as_utc(room.last_activity_at), message_at), str(room.id), room))
    shown.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [entry[2] for entry in shown], set(ids)


async def _rooms_by_id(ids: Iterable[PydanticObjectId]) -> dict[PydanticObjectId, RoomDoc]:
    wanted = list(ids)
    if not wanted:
        return {}
    found = await RoomDoc.find({"_id": {"$in": wanted}}, batch_size=ONE_REPLY).to_list()
    return {room.id: room for room in found if room.id is not None}


async def _newest_messages(
    hints: Mapping[PydanticObjectId, int], watermark: int, count: int
) -> dict[PydanticObjectId, tuple[list[MessageDoc], bool]]:
    """Each room's newest ``count`` messages at or below the watermark (or stored
    before positions), ascending, and whether older ones exist: one query for all
    the rooms, from each room's seq hint down, and again further down only for rooms
    that came up short (a hint far behind, or many messages still in flight)."""
    result: dict[PydanticObjectId, tuple[list[MessageDoc], bool]] = {}
    kept: dict[PydanticObjectId, list[MessageDoc]] = defaultdict(list)
    # Each room is read from its ceiling (none: its top) down to its floor, exclusive.
    reach = count + 1 + SEQ_SLACK
    floors = {room_id: max(0, hint - reach) for room_id, hint in hints.items()}
    ceilings: dict[PydanticObjectId, int | None] = dict.fromkeys(hints)
    while floors:
        ranges = [
            _seq_range(room_id, floor, ceilings[room_id]) for room_id, floor in floors.items()
        ]
        for message in await MessageDoc.find({"$or": ranges}, batch_size=ONE_REPLY).to_list():
            if message.pos is None or message.pos <= watermark:
                kept[message.room_id].append(message)
        reach *= 2
        short: dict[PydanticObjectId, int] = {}
        for room_id, floor in floors.items():
            if len(kept[room_id]) <= count and floor > 0:
                ceilings[room_id] = floor
                short[room_id] = max(0, floor - reach)
        floors = short
    for room_id in hints:
        ordered = sorted(kept[room_id], key=lambda message: message.seq)
        newest = ordered[max(0, len(ordered) - count) :] if count else []
        result[room_id] = (newest, len(ordered) > len(newest))
    return result


def _seq_range(room_id: PydanticObjectId, floor: int, ceiling: int | None) -> dict[str, Any]:
    seqs: dict[str, int] = {"$gt": floor}
    if ceiling is not None:
        seqs["$lte"] = ceiling
    return {"room_id": room_id, "seq": seqs}
