"""The broker between server instances: protocol, backends, topics and event codecs."""

from pubsub.broker import Broker, broker_from_url
from pubsub.events import (
    CONTROL_EVENTS,
    Delivery,
    Event,
    FriendshipChanged,
    MembersChanged,
    MessageAdded,
    MessageData,
    PresenceChanged,
    RoomAdded,
    RoomChanged,
    SessionEnded,
    decode_event,
    encode_event,
    presence_route,
    room_route,
    user_route,
)
from pubsub.topics import ALL_TOPICS, PRESENCE, ROOM_EVENTS, USER_EVENTS, topic_and_key

__all__ = [
    "ALL_TOPICS",
    "CONTROL_EVENTS",
    "PRESENCE",
    "ROOM_EVENTS",
    "USER_EVENTS",
    "Broker",
    "Delivery",
    "Event",
    "FriendshipChanged",
    "MembersChanged",
    "MessageAdded",
    "MessageData",
    "PresenceChanged",
    "RoomAdded",
    "RoomChanged",
    "SessionEnded",
    "broker_from_url",
    "decode_event",
    "encode_event",
    "presence_route",
    "room_route",
    "topic_and_key",
    "user_route",
]
