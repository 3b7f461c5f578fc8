"""The broker between server instances: protocol, backends, topics and event codecs."""

from pubsub.broker import Broker, broker_from_url
from pubsub.events import (
    Event,
    MembersChanged,
    MessageAdded,
    MessageData,
    RoomAdded,
    RoomChanged,
    decode_event,
    encode_event,
)
from pubsub.topics import ROOM_EVENTS, USER_EVENTS

__all__ = [
    "ROOM_EVENTS",
    "USER_EVENTS",
    "Broker",
    "Event",
    "MembersChanged",
    "MessageAdded",
    "MessageData",
    "RoomAdded",
    "RoomChanged",
    "broker_from_url",
    "decode_event",
    "encode_event",
]
