"""The instance-local fan-out: one consumer per topic, handing events to local inboxes.

Each instance consumes the room and user topics exactly once and dispatches every
event in-process to the inboxes registered under its room or user. Dispatch never
waits for a subscriber: an inbox that is full drops the event and remembers that it
lagged, and its reader refills what it missed from the database (messages carry a
gap-free seq, so nothing is lost that way).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Final

from observability.metrics import ACTIVE_SUBSCRIPTIONS
from pubsub import (
    ROOM_EVENTS,
    USER_EVENTS,
    Broker,
    Event,
    MembersChanged,
    MessageAdded,
    RoomAdded,
    RoomChanged,
)

logger = logging.getLogger(__name__)


class Lagged:
    """Stands in the place of events an inbox had to drop."""


LAGGED: Final = Lagged()


class Inbox:
    """A bounded queue of events for one live subscription."""

    def __init__(self, capacity: int) -> None:
        self._events: deque[Event] = deque()
        self._capacity = capacity
        self._lagged = False
        self._ready = asyncio.Event()

    def offer(self, event: Event) -> None:
        """Queue the event, or drop it and remember the lag if the inbox is full."""
        if len(self._events) >= self._capacity:
            self._lagged = True
        else:
            self._events.append(event)
        self._ready.set()

    async def get(self) -> Event | Lagged:
        """The next event; LAGGED once after events were dropped, when the queue ran dry."""
        while not self._events and not self._lagged:
            self._ready.clear()
            await self._ready.wait()
        if self._events:
            return self._events.popleft()
        self._lagged = False
        return LAGGED


class FanoutHub:
    """Routes each consumed event to the inboxes watching its room or its user."""

    def __init__(self, inbox_capacity: int) -> None:
        self._inbox_capacity = inbox_capacity
        self._by_room: dict[str, set[Inbox]] = defaultdict(set)
        self._by_user: dict[str, set[Inbox]] = defaultdict(set)

    def new_inbox(self) -> Inbox:
        return Inbox(self._inbox_capacity)

    @contextmanager
    def watching(
        self, inbox: Inbox, *, rooms: tuple[str, ...] = (), users: tuple[str, ...] = ()
    ) -> Iterator[Inbox]:
        """The inbox receives the events of these rooms and users inside the block."""
        for room_id in rooms:
            self._by_room[room_id].add(inbox)
        for user_id in users:
            self._by_user[user_id].add(inbox)
        ACTIVE_SUBSCRIPTIONS.inc()
        try:
            yield inbox
        finally:
            ACTIVE_SUBSCRIPTIONS.dec()
            for room_id in rooms:
                self.unwatch_room(inbox, room_id)
            for user_id in users:
                self._discard(self._by_user, user_id, inbox)

    def watch_room(self, inbox: Inbox, room_id: str) -> None:
        """Adds a room to an inbox already registered with ``watching``."""
        self._by_room[room_id].add(inbox)

    def unwatch_room(self, inbox: Inbox, room_id: str) -> None:
        self._discard(self._by_room, room_id, inbox)

    @staticmethod
    def _discard(index: dict[str, set[Inbox]], key: str, inbox: Inbox) -> None:
        inboxes = index.get(key)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del index[key]

    def dispatch(self, event: Event) -> None:
        """Hands the event to every local inbox that watches its room or user."""
        if isinstance(event, MessageAdded | MembersChanged):
            targets = self._by_room.get(event.room_id, ())
        elif isinstance(event, RoomAdded | RoomChanged):
            targets = self._by_user.get(event.user_id, ())
        for inbox in tuple(targets):
            inbox.offer(event)

    @property
    def watched_rooms(self) -> int:
        return len(self._by_room)


class FanoutConsumer:
    """Consumes the instance's topics and feeds the hub, for the life of the instance."""

    def __init__(self, broker: Broker, hub: FanoutHub, topics: dict[str, str]) -> None:
        self._broker = broker
        self._hub = hub
        self._topics = topics  # Plop's topic name -> the deployment's full name
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribes to every topic; events published after this returns are seen."""
        for name in (ROOM_EVENTS, USER_EVENTS):
            events = await self._stack.enter_async_context(
                self._broker.subscribe(self._topics[name])
            )
            self._tasks.append(asyncio.create_task(self._pump(name, events)))

    async def _pump(self, name: str, events: AsyncIterator[Event]) -> None:
        async for event in events:
            try:
                self._hub.dispatch(event)
            except Exception:
                logger.exception("dispatch failed", extra={"topic": name})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
