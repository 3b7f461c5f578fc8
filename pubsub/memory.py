"""In-process broker for the embedded mode: one instance, nothing durable."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.context import Context

from observability import tracing
from pubsub.events import Delivery, Event, KeyFilter, decode_event, encode_event

# A published event as each subscriber's queue holds it: its key, its encoding, and
# the trace context of its publish (None while tracing is off).
_Queued = tuple[str, bytes, Context | None]


class MemoryBroker:
    """Hands each published event to every current subscriber of its topic.

    Events go through the wire codec even here, so that the embedded mode exercises
    the same encoding as Kafka does.
    """

    def __init__(self, url: str = "memory://", client_id: str = "") -> None:
        self._queues: dict[str, set[asyncio.Queue[_Queued]]] = defaultdict(set)

    async def start(self, topics: dict[str, int]) -> None:
        return None

    async def publish(self, topic: str, key: str, event: Event) -> None:
        raw = encode_event(event)
        if not tracing.active:
            for queue in self._queues[topic]:
                queue.put_nowait((key, raw, None))
            return
        # In one process the trace context travels beside the event, as it is.
        with tracing.publishing(topic, key, event.type, "memory"):
            context = tracing.current_context()
            for queue in self._queues[topic]:
                queue.put_nowait((key, raw, context))

    @asynccontextmanager
    async def subscribe(
        self, topic: str, wanted: KeyFilter | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        # Unbounded: the one consumer per topic is the instance's dispatcher, which
        # never blocks on a subscriber (see live.hub).
        queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._queues[topic].add(queue)

        async def events() -> AsyncIterator[Event]:
            while True:
                key, raw, context = await queue.get()
                if wanted is not None and not wanted(key):
                    continue
                event = decode_event(raw)
                if event is not None:
                    if tracing.active:
                        tracing.received_context(context)
                    yield event

        try:
            yield events()
        finally:
            self._queues[topic].discard(queue)

    @asynccontextmanager
    async def consume(self, topic: str, group: str) -> AsyncIterator[AsyncIterator[Delivery]]:
        # One process, one consumer per group: a plain subscription; commits are no-ops.
        async with self.subscribe(topic) as events:

            async def deliveries() -> AsyncIterator[Delivery]:
                async for event in events:
                    yield Delivery(event, _nothing_to_commit)

            yield deliveries()

    async def ping(self) -> None:
        return None  # in-process: there is nothing to reach

    async def close(self) -> None:
        self._queues.clear()


async def _nothing_to_commit() -> None:
    return None
