"""Presence of many users in one Redis round trip, as ``PresenceService`` shows one.

A page of rooms shows the presence of every member: one pipeline for the page,
not a lookup per member. It reads the state that ``services.presence`` keeps,
through that module's own key names.
"""

from __future__ import annotations

from collections.abc import Iterable

from beanie import PydanticObjectId
from redis.asyncio import Redis

from services.friends import FriendService
from services.presence import OFFLINE, ONLINE, Presence, _state, _timestamp


async def visible_presences(
    redis: Redis,
    friends: FriendService,
    viewer_id: PydanticObjectId,
    user_ids: Iterable[PydanticObjectId],
) -> dict[PydanticObjectId, Presence]:
    """The presence of those users the viewer may see: themself and their friends."""
    wanted = set(user_ids)
    others = wanted - {viewer_id}
    visible = [viewer_id] if viewer_id in wanted else []
    if others:
        visible += others & set(await friends.friend_ids(viewer_id))
    if not visible:
        return {}
    async with redis.pipeline(transaction=False) as pipeline:
        for user_id in visible:
            pipeline.hmget(_state(str(user_id)), ["status", "last_seen"])
        states = await pipeline.execute()
    presences: dict[PydanticObjectId, Presence] = {}
    for user_id, (status, seen) in zip(visible, states, strict=True):
        if status == ONLINE:
            presences[user_id] = Presence(str(user_id), ONLINE, None)
        else:
            last_seen = _timestamp(None if seen is None else str(seen))
            presences[user_id] = Presence(str(user_id), OFFLINE, last_seen)
    return presences
