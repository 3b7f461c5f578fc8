"""Publishing: the one way services put events on the broker."""

from __future__ import annotations

import asyncio
import logging

from pubsub import Broker, Event, topic_and_key

logger = logging.getLogger(__name__)


class EventPublisher:
    """Sends room events keyed by room and user events keyed by user, with a deadline."""

    def __init__(self, broker: Broker, topics: dict[str, str], timeout_seconds: float) -> None:
        self._broker = broker
        self._topics = topics
        self._timeout_seconds = timeout_seconds

    async def publish(self, event: Event) -> bool:
        """Whether the broker took the event in time; a failure is logged, not raised.

        Durable state is already stored when an event is published; what an event
        that failed to publish carried is recovered from the database (messages by
        the relay and by seq gap filling).
        """
        name, key = topic_and_key(event)
        topic = self._topics[name]
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await self._broker.publish(topic, key, event)
        except Exception as exc:
            logger.warning(
                "publish failed", extra={"topic": topic, "event": event.type, "error": repr(exc)}
            )
            return False
        return True
