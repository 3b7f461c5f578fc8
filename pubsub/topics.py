"""Plop's topics, named without the deployment's prefix (see ``Settings.topic``).

ROOM_EVENTS carries everything that happens in a room (key: room id, so one room's
events stay in one partition, in order). USER_EVENTS carries what one user's room
list must learn (key: user id).
"""

ROOM_EVENTS = "room-events"
USER_EVENTS = "user-events"
ALL_TOPICS = (ROOM_EVENTS, USER_EVENTS)
