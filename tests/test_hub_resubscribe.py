"""The instance's consumer outlives a failed subscription (live/hub.py FanoutConsumer):
it subscribes again, and every watcher learns that events may have been missed. No
server: the embedded broker, with one subscription made to fail."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from devtools.sample_events import room_message
from live.hub import LAGGED, FanoutConsumer, FanoutHub
from pubsub import ALL_TOPICS, Event, MessageAdded, room_route
from pubsub.events import KeyFilter
from pubsub.memory import MemoryBroker

WAIT_SECONDS = 10


class BrokenOnce(MemoryBroker):
    """The embedded broker, whose first subscription to ``failing`` raises once
    ``failing_after`` events came through it."""

    def __init__(self, failing: str, failing_after: int) -> None:
        super().__init__()
        self.failing = failing
        self.failing_after = failing_after
        self.subscriptions: dict[str, int] = {}

    @asynccontextmanager
    async def subscribe(
        self, topic: str, wanted: KeyFilter | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        self.subscriptions[topic] = self.subscriptions.get(topic, 0) + 1
        first = self.subscriptions[topic] == 1
        async with super().subscribe(topic, wanted) as events:
            if topic == self.failing and first:
                yield self._failing(events)
            else:
                yield events

    async def _failing(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        given = 0
        async for event in events:
            if given == self.failing_after:
                raise ConnectionError("the subscription broke")
            given += 1
            yield event


async def test_a_failed_subscription_is_made_again_and_its_watchers_told_they_missed_events() -> (
    None
):
    room = f"room-{secrets.token_hex(4)}"
    other = f"room-{secrets.token_hex(4)}"
    broker = BrokenOnce("room-events", failing_after=1)
    await broker.start(dict.fromkeys(ALL_TOPICS, 1))
    hub = FanoutHub(inbox_capacity=100)
    consumer = FanoutConsumer(broker, hub, {name: name for name in ALL_TOPICS})
    with hub.watching(room_route(room)) as inbox, hub.watching(room_route(other)) as idle:
        await consumer.start()
        try:
            await broker.publish("room-events", room, room_message(room, 1))
            first = await asyncio.wait_for(inbox.get(), WAIT_SECONDS)
            assert isinstance(first, MessageAdded) and first.message.seq == 1

            # The next event breaks the subscription: it is lost with it.
            await broker.publish("room-events", room, room_message(room, 2))
            # Every watcher is told, the one that had nothing waiting as well.
            assert await asyncio.wait_for(inbox.get(), WAIT_SECONDS) is LAGGED
            assert await asyncio.wait_for(idle.get(), WAIT_SECONDS) is LAGGED
            assert broker.subscriptions["room-events"] == 2

            # The new subscription delivers what is published from then on.
            await broker.publish("room-events", room, room_message(room, 3))
            third = await asyncio.wait_for(inbox.get(), WAIT_SECONDS)
            assert isinstance(third, MessageAdded) and third.message.seq == 3
            # The other topics were never subscribed again.
            assert broker.subscriptions["user-events"] == 1
        finally:
            await consumer.stop()
