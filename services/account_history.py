"""What an account stream reads: the watermark, the viewer's rooms, and replays.

The store side of ``live.account_stream`` (its ``AccountHistory``). A replay near
the watermark (where live streams catch up) comes from chunks of every room's
events that every stream of the instance shares (``services.recent_room_events``);
one further back is two queries for the viewer alone whatever the number of rooms:
the messages of the rooms by ``(room_id, pos)`` and the room event log
(``models.room_event``), merged by position. Either way, the senders of the
messages read are read in one batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeVar

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from beanie.odm.queries.find import FindMany

from live.account_stream import AccountHistory, AccountStream, Given, Stored
from live.hub import FanoutHub
from live.room_stream import Membership
from models import MessageDoc, RoomEventDoc
from pubsub import (
    InvitationReceived,
    MembersChanged,
    MessageData,
    MessageUpdated,
    ReactionChanged,
    ReadReceipt,
    RoomAdded,
    TypingChanged,
    decode_event,
)
from services.accounts import AccountService
from services.event_positions import EventPositions
from services.message_data import message_data
from services.rate_limits import LimitName, RateLimiter
from services.recent_room_events import CHUNK, KEPT_CHUNKS, RecentRoomEvents, RoomEventEntry
from services.room_history import StoredRoomHistory
from services.sync_tokens import SyncTokens

# Messages one read of a room's messages by seq gives at most (a gap, a join).
MESSAGES_READ = 500
# A replay this close to the watermark reads the shared recent chunks; one further
# back reads the viewer's own events alone.
RECENT_POSITIONS = CHUNK * KEPT_CHUNKS // 2
D = TypeVar("D", MessageDoc, RoomEventDoc)
_REPLAYED = (
    MessageUpdated,
    ReactionChanged,
    ReadReceipt,
    MembersChanged,
    RoomAdded,
    InvitationReceived,
)


class StoredAccountHistory:
    """``AccountHistory`` on the store, Redis and the room streams' reads."""

    def __init__(
        self, positions: EventPositions, accounts: AccountService, rooms: StoredRoomHistory
    ) -> None:
        self._positions = positions
        self._accounts = accounts
        self._rooms = rooms
        # Catch-ups near the watermark, shared by every account stream here.
        self._recent = RecentRoomEvents(self._read_span)

    async def watermark(self) -> int:
        return await self._positions.watermark()

    async def rooms_of(self, viewer_id: str) -> set[str]:
        return await self._rooms.rooms_of(viewer_id)

    async def replay(
        self, viewer_id: str, rooms: set[str], after: int, upto: int, limit: int
    ) -> tuple[list[Stored], int]:
        recent_from = max(after, upto - RECENT_POSITIONS)
        if after < recent_from:
            # Far behind (a token from yesterday): the viewer's own events, read for
            # this stream alone, rather than everyone's.
            return await self._replay_alone(viewer_id, rooms, after, recent_from, limit)
        entries, reached = await self._recent.between(viewer_id, rooms, after, upto, limit)
        return [Stored(entry.pos, entry.item) for entry in entries], reached

    async def _replay_alone(
        self, viewer_id: str, rooms: set[str], after: int, upto: int, limit: int
    ) -> tuple[list[Stored], int]:
        room_ids = [PydanticObjectId(each) for each in rooms]
        of_rooms = {"room_id": {"$in": room_ids}}
        # The room event log also holds events of the viewer's own rooms it is not in
        # yet (RoomAdded, an invitation): those name the viewer among their users.
        of_viewer = {"$or": [of_rooms, {"user_ids": PydanticObjectId(viewer_id)}]}
        entries, reached = await self._read(
            after, upto, of_rooms if room_ids else None, of_viewer, limit
        )
        return [Stored(entry.pos, entry.item) for entry in entries], reached

    async def _read_span(self, after: int, upto: int) -> list[RoomEventEntry]:
        """Every stored event with after < pos <= upto, of every room, ascending."""
        entries, _ = await self._read(after, upto, {}, {}, None)
        return entries

    async def _read(
        self,
        after: int,
        upto: int,
        messages_of: Mapping[str, object] | None,
        logged_of: Mapping[str, object],
        limit: int | None,
    ) -> tuple[list[RoomEventEntry], int]:
        """The stored events with after < pos <= upto that the two filters choose
        (None: no message), ascending, and the position they are complete up to: with
        a limit, each read is cut at its first ``limit`` events, and the two together
        are complete only up to the lower of the positions they were cut at."""
        span = {"pos": {"$gt": after, "$lte": upto}}
        messages = (
            await _ascending(MessageDoc.find({**messages_of, **span}), limit)
            if messages_of is not None
            else []
        )
        logged = await _ascending(RoomEventDoc.find({**logged_of, **span}), limit)
        reached = upto
        for found in (messages, logged):
            if limit is not None and len(found) == limit:
                last = found[-1].pos
                assert last is not None
                reached = min(reached, last)
        entries = [
            RoomEventEntry(message.pos, str(message.room_id), frozenset(), data)
            for message, data in zip(messages, await self._data(messages), strict=True)
            if message.pos is not None and message.pos <= reached
        ]
        for entry in logged:
            if entry.pos <= reached and (event := _logged_event(entry)) is not None:
                users = frozenset(map(str, entry.user_ids))
                entries.append(RoomEventEntry(entry.pos, str(entry.room_id), users, event))
        entries.sort(key=lambda each: each.pos)
        return entries, reached

    async def messages(
        self, room_id: str, after_seq: int, before_seq: int | None, above_pos: int
    ) -> list[MessageData]:
        seqs: dict[str, int] = {"$gt": after_seq}
        if before_seq is not None:
            seqs["$lt"] = before_seq
        found = (
            await MessageDoc.find(
                {"room_id": PydanticObjectId(room_id), "seq": seqs, "pos": {"$gt": above_pos}}
            )
            .sort(("seq", SortDirection.ASCENDING))
            .limit(MESSAGES_READ)
            .to_list()
        )
        return await self._data(found)

    async def membership(self, room_id: str) -> Membership:
        return await self._rooms.membership(room_id)

    async def hidden_from_viewer(self, event: TypingChanged | ReadReceipt, viewer_id: str) -> bool:
        return bool(await self._rooms.hidden_from(event, [viewer_id]))

    async def _data(self, messages: list[MessageDoc]) -> list[MessageData]:
        if not messages:
            return []
        senders = await self._accounts.get_many([message.sender_id for message in messages])
        return [message_data(message, senders.get(message.sender_id)) for message in messages]


async def _ascending(found: FindMany[D], limit: int | None) -> list[D]:
    ordered = found.sort(("pos", SortDirection.ASCENDING))
    return await (ordered if limit is None else ordered.limit(limit)).to_list()


def _logged_event(
    entry: RoomEventDoc,
) -> (
    MessageUpdated
    | ReactionChanged
    | ReadReceipt
    | MembersChanged
    | RoomAdded
    | InvitationReceived
    | None
):
    event = decode_event(json.dumps(entry.event).encode())
    return event if isinstance(event, _REPLAYED) else None


class AccountStreams:
    """Opens the account streams of this instance (``Services.account_streams``)."""

    def __init__(
        self,
        hub: FanoutHub,
        history: AccountHistory,
        tokens: SyncTokens,
        limits: RateLimiter,
        recheck_seconds: float,
        max_replay: int,
    ) -> None:
        self._hub = hub
        self._history = history
        self._tokens = tokens
        self._limits = limits
        self._recheck_seconds = recheck_seconds
        self._max_replay = max_replay

    async def open(self, viewer_id: str, since: str | None) -> AccountStream:
        """The viewer's stream after the token (None: from now). A token is checked
        (``SyncTokens.decode``), and resuming from one counts as a sync against the
        viewer's budget: its replay reads what a sync would."""
        cursor = None
        if since is not None:
            cursor = await self._tokens.decode(viewer_id, since)
            await self._limits.hit(LimitName.SYNC, viewer_id)
        return AccountStream(
            self._hub,
            self._history,
            viewer_id,
            cursor,
            recheck_seconds=self._recheck_seconds,
            max_replay=self._max_replay,
        )

    async def token(self, viewer_id: str, given: Given) -> str:
        """The token of what was given up to and including this item."""
        return await self._tokens.encode(viewer_id, given.cursor)
