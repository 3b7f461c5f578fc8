"""An instance drops the events nobody on it follows by their Kafka key, before it
decodes them, and still hands every followed event on: on the embedded broker, on
the real Kafka, and for every event type (its key names its route)."""

from __future__ import annotations

import asyncio
import secrets
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import pubsub.kafka
import pubsub.memory
from devtools.sample_events import room_message
from live.hub import FanoutConsumer, FanoutHub
from pubsub import ALL_TOPICS, Broker, Event, MessageAdded, room_route, topic_and_key
from pubsub import events as event_types
from pubsub.kafka import KafkaBroker
from pubsub.memory import MemoryBroker
from pubsub.topics import ROUTE_OF_KEY
from tests.support.services import RealServices

IGNORED_ROOMS = 40


def _sample(cls: type[Any]) -> Any:
    """An instance of an event dataclass with made-up values of the right types."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in fields(cls):
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):
            kind = typing.get_args(kind)[0]
        if kind is str:
            values[field.name] = f"{field.name}-{secrets.token_hex(3)}"
        elif kind is bool:
            values[field.name] = True
        elif kind is int:
            values[field.name] = 1
        elif kind is datetime:
            values[field.name] = datetime.now(UTC)
        elif typing.get_origin(kind) is tuple:
            values[field.name] = ()
        elif is_dataclass(kind):
            values[field.name] = _sample(kind)  # type: ignore[arg-type]
        else:
            raise AssertionError(f"no sample for {cls.__name__}.{field.name}: {kind}")
    return cls(**values)


EVENT_TYPES = [
    cls
    for cls in vars(event_types).values()
    if isinstance(cls, type) and is_dataclass(cls) and isinstance(getattr(cls, "type", None), str)
]


def test_every_event_type_is_covered() -> None:
    assert len(EVENT_TYPES) >= 11


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_an_events_key_names_its_route(event_type: type[Any]) -> None:
    event = _sample(event_type)
    topic, key = topic_and_key(event)
    assert topic in ALL_TOPICS
    assert ROUTE_OF_KEY[topic](key) == event.route


@contextmanager
def counted_decodes(module: types.ModuleType) -> Iterator[list[bytes]]:
    """Counts the events the broker module decodes."""
    decoded: list[bytes] = []
    original = module.decode_event

    def counting(raw: bytes) -> Event | None:
        decoded.append(raw)
        return original(raw)  # type: ignore[no-any-return]

    module.decode_event = counting  # type: ignore[attr-defined]
    try:
        yield decoded
    finally:
        module.decode_event = original  # type: ignore[attr-defined]


async def only_the_followed_room_is_decoded(
    broker: Broker, topics: dict[str, str], module: types.ModuleType
) -> None:
    hub = FanoutHub(inbox_capacity=100)
    consumer = FanoutConsumer(broker, hub, topics)
    followed = f"room-{secrets.token_hex(4)}"
    with counted_decodes(module) as decoded, hub.watching(room_route(followed)) as inbox:
        await consumer.start()
        try:
            for number in range(IGNORED_ROOMS):
                await broker.publish(
                    topics["room-events"], f"other-{number}", room_message(f"other-{number}", 1)
                )
            await broker.publish(topics["room-events"], followed, room_message(followed, 1))
            got = await asyncio.wait_for(inbox.get(), 30)
        finally:
            await consumer.stop()
    assert isinstance(got, MessageAdded)
    assert got.message.room_id == followed
    assert len(decoded) == 1  # the ignored rooms' events were never decoded


async def test_the_embedded_broker_drops_unfollowed_events_undecoded() -> None:
    broker = MemoryBroker()
    topics = {name: name for name in ALL_TOPICS}
    await broker.start(dict.fromkeys(topics.values(), 1))
    await only_the_followed_room_is_decoded(broker, topics, pubsub.memory)


async def test_kafka_drops_unfollowed_events_by_key_undecoded(
    real_services: RealServices,
) -> None:
    prefix = f"plop-test-keys-{secrets.token_hex(4)}"
    topics = {name: f"{prefix}-{name}" for name in ALL_TOPICS}
    broker = KafkaBroker(real_services.broker_url, "key-filter-test")
    await broker.start(dict.fromkeys(topics.values(), 2))
    try:
        await only_the_followed_room_is_decoded(broker, topics, pubsub.kafka)
    finally:
        await broker.close()
