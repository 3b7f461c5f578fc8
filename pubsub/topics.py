"""Plop's topics, named without the deployment's prefix (see ``Settings.topic``).

ROOM_EVENTS carries everything that happens in a room, reactions included (key: room
id, so one room's events stay in one partition, in order). USER_EVENTS carries what one user's own
view must learn: rooms added, read markers, friendships, ended sessions (key: user
id). PRESENCE
carries users going online and offline (key: user id).
"""

from __future__ import annotations

from collections.abc import Callable

from pubsub.events import (
    Event,
    FriendshipChanged,
    InvitationReceived,
    MembersChanged,
    MessageAdded,
    MessageUpdated,
    PresenceChanged,
    ReactionChanged,
    ReadReceipt,
    RoomAdded,
    RoomChanged,
    SessionEnded,
    TypingChanged,
    presence_route,
    room_route,
    user_route,
)

ROOM_EVENTS = "room-events"
USER_EVENTS = "user-events"
PRESENCE = "presence"
ALL_TOPICS = (ROOM_EVENTS, USER_EVENTS, PRESENCE)

# Each topic's partition key names the route its events go to (``Event.route``), so
# that an instance can tell from the key alone whether anyone follows an event.
ROUTE_OF_KEY: dict[str, Callable[[str], str]] = {
    ROOM_EVENTS: room_route,
    USER_EVENTS: user_route,
    PRESENCE: presence_route,
}


def topic_and_key(event: Event) -> tuple[str, str]:
    """The topic (unprefixed) and partition key an event is published with."""
    if isinstance(
        event,
        MessageAdded
        | MessageUpdated
        | ReactionChanged
        | TypingChanged
        | ReadReceipt
        | MembersChanged,
    ):
        return ROOM_EVENTS, event.room_id
    if isinstance(
        event, RoomAdded | RoomChanged | InvitationReceived | FriendshipChanged | SessionEnded
    ):
        return USER_EVENTS, event.user_id
    if isinstance(event, PresenceChanged):
        return PRESENCE, event.user_id
    raise TypeError(f"no topic for {type(event).__name__}")
