"""Mentions: ``@username`` of a member of the room, read from a message's text.

Only members are mentioned: a name of someone outside the room (or of no one) is
plain text. What a message mentions is decided when it is stored (and again when
its text is edited), so that the push of a mention and ``Room.mentionCount`` read
it from the message instead of parsing text again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from beanie import PydanticObjectId

from backends.mongo import aggregate_rows
from models import MessageDoc, UserDoc

# A username as signUp takes it (3-32 of [a-z0-9_.], matched case-insensitively),
# after an "@" that does not continue a word or an e-mail address.
_MENTION = re.compile(r"(?<![\w.@])@([a-z0-9_.]{3,32})", re.IGNORECASE)
# Names looked up per message: a text of a hundred @names is a flood, not a message.
# Message.mentions holds at most this many (the query cost weighs it by this).
MAX_MENTIONS = 20


def mentioned_names(text: str) -> set[str]:
    """The usernames the text names (lowercased; a sentence's last dot left out too)."""
    names: set[str] = set()
    for match in _MENTION.finditer(text):
        name = match.group(1).lower()
        names.add(name)
        if (bare := name.rstrip(".")) != name and len(bare) >= 3:
            names.add(bare)
        if len(names) >= MAX_MENTIONS:
            break
    return names


async def mentioned_members(
    text: str, member_ids: Iterable[PydanticObjectId]
) -> list[PydanticObjectId]:
    """The members of the room that the text names, by username: one query, and none
    at all for a text without an "@"."""
    if "@" not in text or not (names := mentioned_names(text)):
        return []
    found = await UserDoc.find(
        {"username": {"$in": sorted(names)}, "_id": {"$in": list(member_ids)}}
    ).to_list()
    return sorted(user.id for user in found if user.id is not None)[:MAX_MENTIONS]


async def mention_counts(
    viewer_id: PydanticObjectId, markers: Mapping[PydanticObjectId, int]
) -> dict[PydanticObjectId, int]:
    """Per room (given with the viewer's read marker), the messages after the marker
    that mention the viewer (the viewer's own aside): one aggregation for all the rooms."""
    if not markers:
        return {}
    after = [{"room_id": room_id, "seq": {"$gt": seq}} for room_id, seq in markers.items()]
    counts = await aggregate_rows(
        MessageDoc,
        [
            {"$match": {"$or": after, "mention_ids": viewer_id, "sender_id": {"$ne": viewer_id}}},
            {"$group": {"_id": "$room_id", "count": {"$sum": 1}}},
        ],
    )
    found = {PydanticObjectId(row["_id"]): int(row["count"]) for row in counts}
    return {room_id: found.get(room_id, 0) for room_id in markers}
