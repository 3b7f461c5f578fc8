"""Replies: a message may answer one earlier message of its own room.

The reply keeps only the original's id; ``Message.replyTo`` reads the original as it
stands, so a deleted original shows deleted with no text, and its text is never
copied into the reply.
"""

from __future__ import annotations

from collections.abc import Iterable

from beanie import PydanticObjectId

from errors import BadUserInput
from models import MessageDoc

NOT_IN_ROOM = "replyToId must name a message of the same room"


async def reply_target(
    room_id: PydanticObjectId, reply_to_id: PydanticObjectId
) -> PydanticObjectId:
    """The original's id; BAD_USER_INPUT unless it is a message of this room (another
    room's message, or none, reads the same: an id reveals nothing of other rooms)."""
    if await MessageDoc.find_one({"_id": reply_to_id, "room_id": room_id}) is None:
        raise BadUserInput(NOT_IN_ROOM)
    return reply_to_id


async def messages_by_id(
    keys: Iterable[tuple[PydanticObjectId, PydanticObjectId]],
) -> dict[PydanticObjectId, MessageDoc]:
    """The messages with these (room, message) ids, by id (those that exist): one query
    for a page's originals. The rooms only narrow the query to the rooms' shards on a
    cluster sharded by room (models.shard_keys); the ids alone decide what is found."""
    wanted = set(keys)
    if not wanted:
        return {}
    rooms = list({room_id for room_id, _ in wanted})
    ids = list({message_id for _, message_id in wanted})
    found = await MessageDoc.find({"room_id": {"$in": rooms}, "_id": {"$in": ids}}).to_list()
    return {message.id: message for message in found if message.id is not None}
