"""The instance-local fan-out: one consumer per topic, handing events to local watchers.

Each instance consumes the room and user topics exactly once and dispatches every
event in-process to the watchers registered under its room or user. Dispatch never
waits for a subscriber. A subscription's ``Inbox`` keeps two queues: data events
(messages, presence) in a bounded one that drops what does not fit and remembers
that it lagged, so its reader refills from the database (messages carry a gap-free
seq); control events (``pubsub.CONTROL_EVENTS``: membership, friendship, ended
sessions) in their own queue, read first and never dropped for data. Only a flood
of control events far beyond any real use overflows that one too, and then the
reader is told LAGGED as well and re-derives what it watches from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Final, Protocol

from observability import tracing
from observability.metrics import ACTIVE_SUBSCRIPTIONS
from pubsub import ALL_TOPICS, CONTROL_EVENTS, Broker, Event, MessageAdded
from pubsub.events import KeyFilter
from pubsub.topics import ROUTE_OF_KEY

logger = logging.getLogger(__name__)

# Control events one inbox may hold, as a multiple of its data capacity.
CONTROL_CAPACITY_FACTOR = 4
# The longest wait between a failed topic subscription and the next attempt.
RESUBSCRIBE_MAX_SECONDS = 5.0


def raise_if_stopped() -> None:
    """Raises CancelledError if the running task was cancelled and went on anyway.

    A GraphQL rendering whose fields await the store or Redis may turn a cancel into
    a field error and return, so a subscription (or a feed) that was stopped during
    a rendering would go on waiting for its next event until its socket closes,
    counted active all that time. The stop was asked for all the same: the waiting
    places call this first.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Lagged:
    """Stands in the place of events an inbox had to drop."""


LAGGED: Final = Lagged()


class Watcher(Protocol):
    """Anything the hub hands events to; ``offer`` must never wait."""

    def offer(self, event: Event) -> None: ...

    def missed(self) -> None:
        """Events of its route may have been lost (the consumer subscribed again after
        a failure): whatever the watcher keeps from them is to be read again."""


class Inbox:
    """The events of one live subscription: control events kept, data events bounded."""

    __slots__ = ("_capacity", "_control", "_events", "_lagged", "_ready", "routes")

    def __init__(self, capacity: int) -> None:
        self._events: deque[Event] = deque()
        self._control: deque[Event] = deque()
        self._capacity = capacity
        self._lagged = False
        self._ready = asyncio.Event()
        self.routes: set[str] = set()

    def offer(self, event: Event) -> None:
        """Queue the event, or drop it and remember the lag if its queue is full."""
        if isinstance(event, CONTROL_EVENTS):
            if len(self._control) >= self._capacity * CONTROL_CAPACITY_FACTOR:
                self._lagged = True
            else:
                self._control.append(event)
        elif len(self._events) >= self._capacity:
            self._lagged = True
        else:
            self._events.append(event)
        self._ready.set()

    async def get(self) -> Event | Lagged:
        """The next event, control events first; LAGGED once after events were
        dropped, when the queues ran dry. Raises CancelledError in a task whose stop
        was swallowed (``raise_if_stopped``) instead of waiting on."""
        raise_if_stopped()
        while not self._control and not self._events and not self._lagged:
            self._ready.clear()
            await self._ready.wait()
        if self._control:
            return self._control.popleft()
        if self._events:
            return self._events.popleft()
        self._lagged = False
        return LAGGED

    def missed(self) -> None:
        """Tells the reader LAGGED once its queues run dry, as a drop would."""
        self._lagged = True
        self._ready.set()


class FanoutHub:
    """Routes each consumed event to the watchers of its route.

    A route names what an event is about: ``room:<id>``, ``user:<id>`` (one user's own
    view) or ``presence:<id>`` (see ``pubsub.events``).
    """

    def __init__(self, inbox_capacity: int) -> None:
        self._inbox_capacity = inbox_capacity
        self._by_route: dict[str, set[Watcher]] = defaultdict(set)

    def new_inbox(self) -> Inbox:
        return Inbox(self._inbox_capacity)

    @contextmanager
    def watching(self, *routes: str, subscription: bool = True) -> Iterator[Inbox]:
        """A new inbox that receives the events of these routes inside the block.

        Routes added later with ``watch`` are removed when the block ends as well.
        ``subscription=False`` for an inbox that serves many subscriptions (a room
        feed), which counts its subscribers itself, or for a subscription that adds
        routes before it is live (it counts itself with ``counted`` from then on).
        """
        inbox = self.new_inbox()
        for route in routes:
            self.watch(inbox, route)
        try:
            if subscription:
                with self.counted():
                    yield inbox
            else:
                yield inbox
        finally:
            for route in tuple(inbox.routes):
                self.unwatch(inbox, route)

    @staticmethod
    @contextmanager
    def counted() -> Iterator[None]:
        """Counts one active subscription inside the block: one whose events from now
        on are delivered (the count clients and tests wait on)."""
        ACTIVE_SUBSCRIPTIONS.inc()
        try:
            yield
        finally:
            ACTIVE_SUBSCRIPTIONS.dec()

    def watch(self, inbox: Inbox, route: str) -> None:
        """Adds a route to an inbox opened with ``watching``."""
        self.attach(route, inbox)
        inbox.routes.add(route)

    def unwatch(self, inbox: Inbox, route: str) -> None:
        inbox.routes.discard(route)
        self.detach(route, inbox)

    def attach(self, route: str, watcher: Watcher) -> None:
        """Hands the route's events to a watcher until ``detach``."""
        self._by_route[route].add(watcher)

    def detach(self, route: str, watcher: Watcher) -> None:
        watchers = self._by_route.get(route)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._by_route[route]

    def followed_keys(self, topic: str) -> KeyFilter:
        """Whether anything on this instance watches the route an event of the
        (unprefixed) topic with this key goes to."""
        route_of, by_route = ROUTE_OF_KEY[topic], self._by_route
        return lambda key: route_of(key) in by_route

    def dispatch(self, event: Event) -> None:
        """Hands the event to every local watcher of its route."""
        for watcher in tuple(self._by_route.get(event.route, ())):
            watcher.offer(event)

    def missed_events(self) -> None:
        """Tells every watcher that events may have been lost."""
        for watchers in tuple(self._by_route.values()):
            for watcher in tuple(watchers):
                watcher.missed()


class FanoutConsumer:
    """Consumes the instance's topics and feeds the hub, for the life of the instance."""

    def __init__(self, broker: Broker, hub: FanoutHub, topics: dict[str, str]) -> None:
        self._broker = broker
        self._hub = hub
        self._topics = topics  # Plop's topic name -> the deployment's full name
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribes to every topic; events published after this returns are seen."""
        for name in ALL_TOPICS:
            subscription = AsyncExitStack()
            events = await self._subscribe(name, subscription)
            self._tasks.append(asyncio.create_task(self._pump(name, subscription, events)))

    async def _subscribe(self, name: str, subscription: AsyncExitStack) -> AsyncIterator[Event]:
        # An event nobody here follows is dropped by its key, before its decode:
        # every instance consumes every event, most of them about rooms it does not
        # serve. Dropping one now is what dispatching it to nobody would do.
        return await subscription.enter_async_context(
            self._broker.subscribe(self._topics[name], self._hub.followed_keys(name))
        )

    async def _pump(
        self, name: str, subscription: AsyncExitStack, events: AsyncIterator[Event]
    ) -> None:
        """Dispatches the topic's events for the life of the instance. The broker's
        client rides out a broker's restart by itself; should its subscription fail all
        the same, a consumer that stopped would leave the instance deaf to the topic
        until it restarts. It subscribes again instead, and since what was published
        in between is not read, every watcher is told it missed events (a stream reads
        its messages again from the store, a kept membership is dropped)."""
        failures = 0
        try:
            while True:
                try:
                    async for event in events:
                        failures = 0
                        self._dispatch(name, event)
                except Exception:
                    logger.exception("consuming failed; subscribing again", extra={"topic": name})
                await subscription.aclose()
                failures += 1
                await asyncio.sleep(min(RESUBSCRIBE_MAX_SECONDS, 0.1 * 2**failures))
                try:
                    events = await self._subscribe(name, subscription)
                except Exception:
                    logger.exception("subscribing failed; trying again", extra={"topic": name})
                    events = _nothing()
                    continue
                # From here on nothing is missed: what came before is read again.
                self._hub.missed_events()
        finally:
            await subscription.aclose()

    def _dispatch(self, name: str, event: Event) -> None:
        try:
            if tracing.active:
                self._traced_dispatch(name, event)
            else:
                self._hub.dispatch(event)
        except Exception:
            logger.exception("dispatch failed", extra={"topic": name})

    def _traced_dispatch(self, name: str, event: Event) -> None:
        """The dispatch inside the event's consume span, which the broker's trace
        context makes a child of its publish on whichever instance that was."""
        message_id = event.message.id if isinstance(event, MessageAdded) else None
        with tracing.consuming(self._topics[name], event.type, message_id):
            self._hub.dispatch(event)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _nothing() -> AsyncIterator[Event]:
    """No events: stands for a subscription that could not be opened."""
    none: tuple[Event, ...] = ()
    for event in none:
        yield event
