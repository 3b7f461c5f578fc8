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
from pubsub import ALL_TOPICS, Broker, Event

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
        self.routes: set[str] = set()

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
    """Routes each consumed event to the inboxes watching its route.

    A route names what an event is about: ``room:<id>``, ``user:<id>`` (one user's own
    view) or ``presence:<id>`` (see ``pubsub.events``).
    """

    def __init__(self, inbox_capacity: int) -> None:
        self._inbox_capacity = inbox_capacity
        self._by_route: dict[str, set[Inbox]] = defaultdict(set)

    def new_inbox(self) -> Inbox:
        return Inbox(self._inbox_capacity)

    @contextmanager
    def watching(self, *routes: str, subscription: bool = True) -> Iterator[Inbox]:
        """A new inbox that receives the events of these routes inside the block.

        Routes added later with ``watch`` are removed when the block ends as well.
        ``subscription=False`` for an inbox that serves many subscriptions (a room
        feed), which counts its subscribers itself.
        """
        inbox = self.new_inbox()
        watched = set(routes)
        for route in watched:
            self._by_route[route].add(inbox)
        inbox.routes = watched
        if subscription:
            ACTIVE_SUBSCRIPTIONS.inc()
        try:
            yield inbox
        finally:
            if subscription:
                ACTIVE_SUBSCRIPTIONS.dec()
            for route in tuple(inbox.routes):
                self.unwatch(inbox, route)

    def watch(self, inbox: Inbox, route: str) -> None:
        """Adds a route to an inbox opened with ``watching``."""
        self._by_route[route].add(inbox)
        inbox.routes.add(route)

    def unwatch(self, inbox: Inbox, route: str) -> None:
        inbox.routes.discard(route)
        inboxes = self._by_route.get(route)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._by_route[route]

    def dispatch(self, event: Event) -> None:
        """Hands the event to every local inbox that watches its route."""
        for inbox in tuple(self._by_route.get(event.route, ())):
            inbox.offer(event)


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
        for name in ALL_TOPICS:
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
