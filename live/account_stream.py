"""The rule of an account's stream: every room event of the account once, in order.

``AccountStream`` follows every room its viewer is in on one inbox of the hub, and
gives each event with a ``Cursor`` (``services.sync_tokens``) that says exactly what
was given up to and including it. It rests on positions (``services.event_positions``):

- Positions of one room's messages follow its seqs (its writer takes them after the
  seq before is stored), so giving positions in order gives seqs in order.
- It watches BEFORE it reads: the viewer's own route, then the rooms read from the
  store, then the watermark; whatever is stored after those reads also arrives live.
- A catch-up gives the stored events of the account with positions in
  (``upto``, watermark], in position order, skipping ``also``; then ``upto`` is the
  watermark. Each event given in a catch-up moves ``upto`` to its position, so every
  cursor stays small. A catch-up runs at the start (from the token, if any), after
  the inbox lagged, and before ``also`` would grow past ``MAX_ALSO``.
- A live event at or below ``upto``, or in ``also``, was given: dropped. A live
  message above the room's last given seq + 1 means some were missed (a lagging
  inbox, a failed publish): the gap is read from the store first, by seq. The
  first live message of a room (no seq given yet) reads the room's messages between
  where the stream started on it and that message first.
- Who is in which room: a room the viewer is put in (``RoomAdded``) is watched at
  once and its messages since the join read from the store, so nothing between the
  join and the watch is lost; a room the viewer is taken out of (``MembersChanged``
  removing them) gives ``LeftRoom`` and nothing of it after. A message, edit or
  activity carrying a membership tag the stream has not seen re-reads the room's
  members first (so no event of a room is given after a removal the stream did not
  hear of), and every ``recheck_seconds`` the viewer's rooms are read again, so a
  join or a leave whose event was lost is told all the same.
- Typing has no position: it is given live only, with the cursor as it stands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Protocol

from live.account_cursor import ALSO_SOFT_LIMIT, Cursor, SyncTokenExpired
from live.hub import LAGGED, FanoutHub, Inbox
from live.room_stream import Membership
from pubsub import (
    InvitationReceived,
    MembersChanged,
    MessageAdded,
    MessageData,
    MessageUpdated,
    ReactionChanged,
    ReadReceipt,
    RoomAdded,
    TypingChanged,
    room_route,
    user_route,
)

# How long to wait before catching up again when positions in flight hold the
# watermark back and ``also`` is full (at most the in-flight deadline in all).
FULL_CURSOR_PAUSE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class LeftRoom:
    """The viewer left the room or was taken out of it: nothing of it follows."""

    room_id: str


# What an account stream gives. ``RoomAdded`` is the viewer's own (RoomJoined).
AccountItem = (
    MessageData
    | MessageUpdated
    | ReactionChanged
    | TypingChanged
    | ReadReceipt
    | MembersChanged
    | RoomAdded
    | LeftRoom
    | InvitationReceived
)
RoomEvent = MessageUpdated | ReactionChanged | ReadReceipt | MembersChanged


@dataclass(frozen=True, slots=True)
class Given:
    """One item given, and what was given up to and including it."""

    item: AccountItem
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored event of the account, at its position (a replay's unit)."""

    pos: int
    item: MessageData | RoomEvent | RoomAdded | InvitationReceived


class AccountHistory(Protocol):
    """What an account stream reads from the store and Redis."""

    async def watermark(self) -> int:
        """Every position at or below this is stored (``EventPositions.watermark``)."""
        ...

    async def rooms_of(self, viewer_id: str) -> set[str]:
        """The rooms the viewer is in now."""
        ...

    async def replay(
        self, viewer_id: str, rooms: set[str], after: int, upto: int, limit: int
    ) -> tuple[list[Stored], int]:
        """Stored events with after < pos <= upto, ascending, about ``limit`` of them,
        and the position up to which that list is complete: messages and room events
        of ``rooms``, and the events naming the viewer personally (RoomAdded,
        InvitationReceived, a MembersChanged removing them). Whether the viewer was in
        the room at each is the stream's to decide."""
        ...

    async def messages(
        self, room_id: str, after_seq: int, before_seq: int | None, above_pos: int
    ) -> list[MessageData]:
        """The room's messages with after_seq < seq < before_seq (no bound: None) and
        a position above ``above_pos`` (or none), ascending seq."""
        ...

    async def membership(self, room_id: str) -> Membership:
        """Who is in the room now."""
        ...

    async def hidden_from_viewer(self, event: TypingChanged | ReadReceipt, viewer_id: str) -> bool:
        """Whether the viewer blocks the event's user (their typing and receipts)."""
        ...


@dataclass(slots=True)
class _Room:
    """Where the stream stands on one followed room."""

    # Positions at or below this are before the stream followed the room.
    floor: int
    last_seq: int | None = None  # the last seq given; None before the first
    tag: str | None = None


@dataclass(slots=True)
class _Cursor:
    upto: int
    at: float
    also: set[int] = field(default_factory=set)

    def given(self, pos: int | None) -> bool:
        """Whether the event at this position was given (None: it has none, such
        as an event of an instance that predates positions: never counted given)."""
        return pos is not None and (pos <= self.upto or pos in self.also)

    def frozen(self) -> Cursor:
        return Cursor(upto=self.upto, at=self.at, also=frozenset(self.also))


class AccountStream:
    """One viewer's account stream; ``items()`` gives it, forever."""

    def __init__(
        self,
        hub: FanoutHub,
        history: AccountHistory,
        viewer_id: str,
        since: Cursor | None,
        *,
        recheck_seconds: float,
        replay_page: int = 500,
        max_replay: int = 10_000,
    ) -> None:
        self._hub = hub
        self._history = history
        self._viewer = viewer_id
        self._since = since
        self._recheck_seconds = recheck_seconds
        self._replay_page = replay_page
        self._max_replay = max_replay
        self._rooms: dict[str, _Room] = {}
        self._cursor = _Cursor(upto=0, at=0.0)
        self._inbox: Inbox | None = None
        # Set once every route the stream needs is watched: events published from
        # then on reach it.
        self.watching = asyncio.Event()

    @property
    def followed(self) -> frozenset[str]:
        """The rooms the stream follows now."""
        return frozenset(self._rooms)

    async def items(self) -> AsyncGenerator[Given, None]:
        """What happened after the token (if any), then live events, each once."""
        with ExitStack() as stack:
            inbox = stack.enter_context(
                self._hub.watching(user_route(self._viewer), subscription=False)
            )
            self._inbox = inbox
            rooms = await self._history.rooms_of(self._viewer)
            if self._since is None:
                watermark = await self._history.watermark()
                self._cursor = _Cursor(upto=watermark, at=time.time())
            else:
                since = self._since
                self._cursor = _Cursor(upto=since.upto, at=since.at, also=set(since.also))
            for room_id in rooms:
                self._follow(room_id, floor=self._cursor.upto)
            # Counted active once every route it needs is watched.
            stack.enter_context(self._hub.counted())
            self.watching.set()
            if self._since is not None:
                async for given in self._catch_up(rooms, from_token=True):
                    yield given
            async for given in self._live(inbox):
                yield given

    # -- following rooms

    def _follow(self, room_id: str, floor: int) -> _Room:
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(floor=floor)
            assert self._inbox is not None
            self._hub.watch(self._inbox, room_route(room_id))
        return room

    def _unfollow(self, room_id: str) -> None:
        if self._rooms.pop(room_id, None) is not None and self._inbox is not None:
            self._hub.unwatch(self._inbox, room_route(room_id))

    def _give(self, item: AccountItem, pos: int | None, replayed: bool = False) -> Given:
        """The item with the cursor that includes it. A replayed item moves ``upto``
        to its position: a replay gives, in order, everything of the account below."""
        if replayed and pos is not None:
            self._move_upto(pos)
        elif pos is not None and pos > self._cursor.upto:
            self._cursor.also.add(pos)
        return Given(item, self._cursor.frozen())

    def _move_upto(self, pos: int) -> None:
        if pos > self._cursor.upto:
            self._cursor.upto = pos
            self._cursor.also = {each for each in self._cursor.also if each > pos}

    # -- catching up from the store

    async def _catch_up(
        self, known: set[str] | None = None, from_token: bool = False
    ) -> AsyncIterator[Given]:
        """Gives what is stored in (upto, watermark] and not given yet, then moves
        ``upto`` to the watermark; with ``known`` (the viewer's rooms as just read),
        also the joins and leaves no event told of. From a token, more than
        ``max_replay`` events behind is an expired token."""
        watermark = await self._history.watermark()
        before = set(self._rooms)
        joined: set[str] = set()
        replayed = 0
        while self._cursor.upto < watermark:
            page, reached = await self._history.replay(
                self._viewer, set(self._rooms), self._cursor.upto, watermark, self._replay_page
            )
            replayed += len(page)
            if from_token and replayed > self._max_replay:
                raise SyncTokenExpired("this sync token is too far behind: start over with sync")
            complete = True
            for stored in page:
                followed = set(self._rooms)
                for given in await self._replayed(stored):
                    yield given
                self._move_upto(stored.pos)
                if set(self._rooms) - followed:
                    # Put in a room: read on with it among the rooms read.
                    joined |= set(self._rooms) - followed
                    complete = False
                    break
            if complete:
                self._move_upto(reached)
        for room_id in joined & set(self._rooms):
            # Stored after the watermark, perhaps before the room was watched.
            room = self._rooms[room_id]
            for message in await self._history.messages(room_id, 0, None, watermark):
                for given in self._message(room, message):
                    yield given
        if known is None:
            return
        for room_id in known - set(self._rooms) - before:
            # Put in a room whose RoomAdded is neither logged nor seen.
            self._follow(room_id, floor=watermark)
            yield self._give(RoomAdded(user_id=self._viewer, room_id=room_id), None)
        for room_id in (before - known) & set(self._rooms):
            # Taken out of a room whose event is neither logged nor seen.
            self._unfollow(room_id)
            yield self._give(LeftRoom(room_id), None)

    async def _replayed(self, stored: Stored) -> list[Given]:
        """What one stored event gives the viewer, as the stream stands."""
        item = stored.item
        if self._cursor.given(stored.pos):
            return []
        if isinstance(item, RoomAdded):
            if item.user_id != self._viewer:
                return []
            # Not in the room before this: nothing of it before the join.
            self._follow(item.room_id, floor=stored.pos).floor = stored.pos
            return [self._give(item, stored.pos, replayed=True)]
        if isinstance(item, InvitationReceived):
            return (
                [self._give(item, stored.pos, replayed=True)]
                if item.user_id == self._viewer
                else []
            )
        room = self._rooms.get(item.room_id)
        if room is None or stored.pos <= room.floor:
            return []
        if isinstance(item, MessageData):
            return self._message(room, item, replayed=True)
        if isinstance(item, MembersChanged):
            room.tag = None
            if self._viewer in item.removed:
                self._unfollow(item.room_id)
                return [self._give(LeftRoom(item.room_id), stored.pos, replayed=True)]
        elif isinstance(item, ReadReceipt) and await self._history.hidden_from_viewer(
            item, self._viewer
        ):
            return []
        return [self._give(item, stored.pos, replayed=True)]

    def _message(self, room: _Room, message: MessageData, replayed: bool = False) -> list[Given]:
        if (message.pos is not None and self._cursor.given(message.pos)) or (
            room.last_seq is not None and message.seq <= room.last_seq
        ):
            return []
        room.last_seq = message.seq
        return [self._give(message, message.pos, replayed)]

    # -- live

    async def _live(self, inbox: Inbox) -> AsyncIterator[Given]:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._recheck_seconds
        while True:
            try:
                async with asyncio.timeout_at(next_check):
                    event = await inbox.get()
            except TimeoutError:
                next_check = loop.time() + self._recheck_seconds
                # Only when a membership change went unseen, or positions were given
                # above upto, is the store read further.
                known = await self._history.rooms_of(self._viewer)
                if self._cursor.also or known != set(self._rooms):
                    async for given in self._catch_up(known):
                        yield given
                continue
            if event is LAGGED:
                # What was dropped may have been a join or a leave.
                known = await self._history.rooms_of(self._viewer)
                async for given in self._catch_up(known):
                    yield given
                continue
            pos = _position(event)
            while (
                pos is not None
                and len(self._cursor.also) >= ALSO_SOFT_LIMIT
                and not self._cursor.given(pos)
            ):
                # Catch up so that every cursor fits in a token; positions a stalled
                # write holds in flight keep the watermark back for a moment.
                before = self._cursor.upto
                async for given in self._catch_up():
                    yield given
                if self._cursor.upto == before:
                    await asyncio.sleep(FULL_CURSOR_PAUSE_SECONDS)
            async for given in self._on_event(event):
                yield given

    async def _on_event(self, event: object) -> AsyncIterator[Given]:
        if isinstance(event, RoomAdded):
            if event.user_id == self._viewer and not self._cursor.given(event.pos):
                fresh = event.room_id not in self._rooms
                room = self._follow(event.room_id, floor=event.pos or self._cursor.upto)
                yield self._give(event, event.pos)
                if fresh:
                    # Stored since the join, before the room was watched.
                    for message in await self._history.messages(event.room_id, 0, None, room.floor):
                        for given in self._message(room, message):
                            yield given
            return
        if isinstance(event, InvitationReceived):
            if event.user_id == self._viewer and not self._cursor.given(event.pos):
                yield self._give(event, event.pos)
            return
        if not isinstance(event, MessageAdded | TypingChanged | RoomEvent):
            return
        followed = self._rooms.get(event.room_id)
        if followed is None:
            return  # not followed (any more): nothing of it after LeftRoom
        room = followed
        if isinstance(event, MembersChanged):
            room.tag = None
            if self._viewer in event.removed:
                self._unfollow(event.room_id)
                yield self._give(LeftRoom(event.room_id), event.pos)
            elif not self._cursor.given(event.pos):
                yield self._give(event, event.pos)
            return
        if event.members_tag is not None and event.members_tag != room.tag:
            membership = await self._history.membership(event.room_id)
            if self._viewer not in membership.member_ids:
                self._unfollow(event.room_id)
                yield self._give(LeftRoom(event.room_id), None)
                return
            room.tag = membership.tag
        if isinstance(event, MessageAdded):
            async for given in self._live_message(event.room_id, room, event.message):
                yield given
        elif isinstance(event, TypingChanged):
            if not await self._history.hidden_from_viewer(event, self._viewer):
                yield self._give(event, None)
        elif (
            not self._cursor.given(event.pos)
            and (event.pos or 0) > room.floor
            and not (
                isinstance(event, ReadReceipt)
                and await self._history.hidden_from_viewer(event, self._viewer)
            )
        ):
            yield self._give(event, event.pos)

    async def _live_message(
        self, room_id: str, room: _Room, message: MessageData
    ) -> AsyncIterator[Given]:
        if (message.pos is not None and self._cursor.given(message.pos)) or (
            room.last_seq is not None and message.seq <= room.last_seq
        ):
            return
        if room.last_seq is None or message.seq > room.last_seq + 1:
            # The room's first message here, or some were missed: those before it
            # first. Most are below the watermark: a catch-up gives them in order
            # and keeps the cursor small; the store gives the rest by seq.
            if room.last_seq is not None:
                async for given in self._catch_up():
                    yield given
            for earlier in await self._history.messages(
                room_id, room.last_seq or 0, message.seq, max(room.floor, self._cursor.upto)
            ):
                for given in self._message(room, earlier):
                    yield given
        for given in self._message(room, message):
            yield given


def _position(event: object) -> int | None:
    if isinstance(event, MessageAdded):
        return event.message.pos
    pos = getattr(event, "pos", None)
    return pos if isinstance(pos, int) else None
