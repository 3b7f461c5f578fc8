"""The one rule of live room delivery: exactly once, in order, no gaps, members only.

A ``RoomStream`` turns one room's events (from the hub) and its stored messages into
the sequence its readers may see. Its readers are the shared feeds
(``live.room_feeds``), one stream per feed, followed by every subscription of the
room on this instance that renders alike.

- It watches the room BEFORE it reads where the room stands and who is in it, so a
  message stored or a member removed after those reads also arrives as an event.
- It remembers the last seq it gave. An event at or below it is a duplicate (broker
  redelivery, the relay, a replayed range) and is dropped; an event above last + 1
  means events were missed (a lagging inbox, a failed publish), and the gap is read
  from the store first.
- Who is in the room is read from the store again before every read of stored
  messages (after a lag or a gap), before a message whose sender was authorized
  against a membership this stream has not seen (``MessageAdded.members_tag``), and
  every ``recheck_seconds`` in any case, so a membership change whose event was
  lost (the broker was down) still ends a leaver's stream. A ``MembersChanged``
  event that removes members takes effect at once.

Readers get ``Access`` steps, each before any message it concerns, and messages.
A reader ends (FORBIDDEN) every viewer an ``Access`` does not allow.

The same stream also yields the room's activity events (``RoomActivity``: edits and
deletes, reactions, typing, read receipts, membership changes) in the order they were
consumed, each after the ``Access`` steps that concern it, under the same rules:
an event whose author's authorization read another membership tag is preceded by
a fresh ``Access``. Message readers skip them (a shared feed only forgets its
rendering of an edited message); ``roomActivity`` opens the stream with
``messages=False`` and reads only them, so it never reads stored messages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from errors import Forbidden
from live.hub import LAGGED, FanoutHub, Inbox
from pubsub import (
    ACTIVITY_EVENTS,
    MembersChanged,
    MessageAdded,
    MessageData,
    MessageUpdated,
    ReactionChanged,
    ReadReceipt,
    TypingChanged,
    room_route,
)

# Updated messages whose last state a stream remembers, to drop republished edits.
RECENT_UPDATES = 1_024
# Stored messages one read gives at most (``RoomHistory.stored_batch``).
STORED_BATCH = 100
NO_LONGER_A_MEMBER = "you are no longer a member of this room"


@dataclass(frozen=True, slots=True)
class Membership:
    """Who is in a room, and the tag that changes with every change of it."""

    member_ids: frozenset[str]
    tag: str | None


class RoomHistory(Protocol):
    """What a room stream reads from the store."""

    async def latest_seq(self, room_id: str) -> int:
        """The seq of the room's newest stored message; 0 for none."""
        ...

    async def stored_batch(
        self, room_id: str, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        """Up to ``STORED_BATCH`` stored messages with after_seq < seq (< before_seq),
        ascending; [] at the end."""
        ...

    async def membership(self, room_id: str) -> Membership:
        """Who is in the room now (nobody if it is gone)."""
        ...


@dataclass(frozen=True, slots=True)
class Access:
    """Who may see the room from this step on.

    ``members`` is everyone in the room when it was read from the store; None when
    the step only says who was removed.
    """

    members: frozenset[str] | None
    removed: frozenset[str] = frozenset()
    # Set when the inbox lagged: events were dropped, edits among them perhaps, so a
    # reader that keeps renderings of messages must not trust them any more.
    lagged: bool = False

    def allows(self, viewer_id: str) -> bool:
        if viewer_id in self.removed:
            return False
        return self.members is None or viewer_id in self.members

    def refusal(self, viewer_id: str) -> Forbidden | None:
        """The error that ends the viewer's stream here, or None if it goes on."""
        return None if self.allows(viewer_id) else Forbidden(NO_LONGER_A_MEMBER)


RoomActivity = MessageUpdated | ReactionChanged | TypingChanged | ReadReceipt | MembersChanged
Step = MessageData | Access | RoomActivity


class RoomStream:
    """One room's ordered, gap-free, authorized steps, from a position on.

    Open it with ``RoomStream.open`` (an async context manager); ``last`` is then the
    position it starts from, and ``steps()`` yields the initial ``Access`` first.
    """

    def __init__(
        self,
        history: RoomHistory,
        room_id: str,
        inbox: Inbox,
        recheck_seconds: float,
        messages: bool = True,
    ) -> None:
        self._history = history
        self._messages = messages
        self._room_id = room_id
        self._inbox = inbox
        self._recheck_seconds = recheck_seconds
        self._tag: str | None = None
        self._next_check = 0.0
        self.last = 0  # the seq of the last message given (or the start position)
        # The last state given of recently updated messages: an edit the relay
        # publishes again is given once.
        self._updates: OrderedDict[str, tuple[str, bool, datetime | None]] = OrderedDict()

    @classmethod
    async def open(
        cls,
        stack: AsyncExitStack,
        hub: FanoutHub,
        history: RoomHistory,
        room_id: str,
        after_seq: int | None,
        recheck_seconds: float,
        *,
        subscription: bool = True,
        messages: bool = True,
    ) -> RoomStream:
        """Watches the room, then reads where it stands; the stack's exit unwatches.

        ``after_seq`` None starts at the newest stored message (live only).
        ``subscription=False`` for a stream that serves many subscriptions.
        ``messages=False`` for activity alone: no message is read or yielded.
        """
        inbox = stack.enter_context(
            hub.watching(room_route(str(room_id)), subscription=subscription)
        )
        stream = cls(history, room_id, inbox, recheck_seconds, messages)
        if messages:
            stream.last = await history.latest_seq(room_id) if after_seq is None else after_seq
        return stream

    async def steps(self) -> AsyncIterator[Step]:
        """Access, the stored messages after the start, then live steps, forever."""
        async for step in self._from_store(before_seq=None):
            yield step
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(self._next_check):
                    event = await self._inbox.get()
            except TimeoutError:
                yield await self._access()
                continue
            if event is LAGGED:
                async for step in self._from_store(before_seq=None, lagged=True):
                    yield step
            elif isinstance(event, MembersChanged):
                if event.removed:
                    yield Access(members=None, removed=frozenset(event.removed))
                # Whatever it changed, the tag known here is now stale.
                self._tag = None
                yield event
            elif isinstance(event, ACTIVITY_EVENTS):
                if isinstance(event, MessageUpdated) and self._seen_update(event.message):
                    continue  # a republished edit or delete (the relay, a redelivery)
                if event.members_tag is not None and event.members_tag != self._tag:
                    yield await self._access()
                yield event
            elif (
                self._messages and isinstance(event, MessageAdded) and event.message.seq > self.last
            ):
                seq = event.message.seq
                if seq > self.last + 1:
                    async for step in self._from_store(before_seq=seq):
                        yield step
                elif event.members_tag is not None and event.members_tag != self._tag:
                    yield await self._access()
                if seq > self.last:
                    self.last = seq
                    yield event.message
            if loop.time() >= self._next_check:
                yield await self._access()

    def _seen_update(self, message: MessageData) -> bool:
        """Whether this very state of the message was given already; remembers it."""
        state = (message.text, message.deleted, message.edited_at)
        if self._updates.get(message.id) == state:
            return True
        self._updates[message.id] = state
        self._updates.move_to_end(message.id)
        while len(self._updates) > RECENT_UPDATES:
            self._updates.popitem(last=False)
        return False

    async def _access(self, lagged: bool = False) -> Access:
        membership = await self._history.membership(self._room_id)
        self._tag = membership.tag
        self._next_check = asyncio.get_running_loop().time() + self._recheck_seconds
        return Access(members=membership.member_ids, lagged=lagged)

    async def _from_store(
        self, before_seq: int | None, lagged: bool = False
    ) -> AsyncIterator[Step]:
        """Who may see the room, then the stored messages after ``last``."""
        yield await self._access(lagged)
        while self._messages and (
            batch := await self._history.stored_batch(self._room_id, self.last, before_seq)
        ):
            for message in batch:
                self.last = message.seq
                yield message
