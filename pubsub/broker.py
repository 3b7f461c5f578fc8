"""The broker contract, and the choice of backend by URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import urlsplit

from errors import ConfigError
from pubsub.events import Delivery, Event, KeyFilter
from pubsub.kafka import KafkaBroker, TopicReplication
from pubsub.memory import MemoryBroker


class Broker(Protocol):
    """Carries events between server instances.

    ``subscribe`` gives every event published to the topic after the block was
    entered, to every subscriber (broadcast): each instance sees all events.
    """

    async def start(self, topics: dict[str, int]) -> None:
        """Connect, and create the topics (name -> partitions) that do not exist yet."""

    async def publish(self, topic: str, key: str, event: Event) -> None:
        """Send the event; returns once the broker has it."""

    def subscribe(
        self, topic: str, wanted: KeyFilter | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Every event of the topic published from now on, in per-key order; with
        ``wanted``, only those whose key it takes, the others dropped undecoded."""

    def consume(
        self, topic: str, group: str
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """The topic's events shared among the members of a group (each goes to one
        member), resuming after the last committed one; uncommitted ones come again."""

    async def ping(self) -> None:
        """One round trip to the broker; raises if it does not answer."""

    async def close(self) -> None:
        """Flush and disconnect."""


def broker_from_url(
    url: str, client_id: str, replication: TopicReplication | None = None
) -> Broker:
    """The broker backend the URL's scheme names; ``replication`` is how a Kafka
    cluster copies the topics Plop creates (in memory there is one copy)."""
    backends: dict[str, Callable[[], Broker]] = {
        "memory": lambda: MemoryBroker(url, client_id),
        "kafka": lambda: KafkaBroker(url, client_id, replication),
    }
    if (backend := backends.get(urlsplit(url).scheme)) is None:
        raise ConfigError(f"PLOP_BROKER_URL has an unsupported scheme: {url!r}")
    return backend()
