"""Where a room's seq stands: the hint, and the exact newest seq found from it.

``RoomProgressDoc.seq_hint`` (and, for rooms stored before it, ``RoomDoc.seq_hint``)
is a lower bound of the newest stored seq (see services.room_writer for why it can
lag but never lead); the exact value is found from it by indexed point lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from beanie import PydanticObjectId

from models import MessageDoc, RoomDoc, RoomProgressDoc


async def progress_hints(room_ids: Iterable[PydanticObjectId]) -> dict[PydanticObjectId, int]:
    """The seq hint of each room that has a progress document, in one query."""
    found = await RoomProgressDoc.find({"_id": {"$in": list(set(room_ids))}}).to_list()
    return {progress.id: progress.seq_hint for progress in found}


async def seq_hint(room_id: PydanticObjectId) -> int:
    room = await RoomDoc.get(room_id)
    legacy = room.seq_hint if room else 0
    return max(legacy, (await progress_hints([room_id])).get(room_id, 0))


async def message_at(room_id: PydanticObjectId, seq: int) -> MessageDoc | None:
    return await MessageDoc.find_one(MessageDoc.room_id == room_id, MessageDoc.seq == seq)


async def _is_stored(room_id: PydanticObjectId, seq: int) -> bool:
    found = await MessageDoc.get_pymongo_collection().find_one(
        {"room_id": room_id, "seq": seq}, {"_id": 1}
    )
    return found is not None


async def newest_seq_from(room_id: PydanticObjectId, taken: int) -> int:
    """The room's newest seq, knowing that ``taken`` is stored (or is 0).

    Seqs have no gaps, so "seq is stored" is true up to the newest and false past it:
    the newest is found by doubling steps from ``taken``, then halving, in about
    2·log2(distance) indexed point lookups however far the room has moved.
    """
    low, step = taken, 1
    while await _is_stored(room_id, low + step):
        low, step = low + step, step * 2
    high = low + step  # not stored when looked at
    while high - low > 1:
        middle = (low + high) // 2
        if await _is_stored(room_id, middle):
            low = middle
        else:
            high = middle
    return low


async def latest_seq(room_id: PydanticObjectId) -> int:
    """The seq of the room's newest message; 0 for an empty room."""
    return await newest_seq_from(room_id, await seq_hint(room_id))


async def latest_seqs(hints: Mapping[PydanticObjectId, int]) -> dict[PydanticObjectId, int]:
    """``latest_seq`` of many rooms in two queries, each from a hint of its room.

    Seqs have no gaps, so a room's newest seq is the highest of the messages stored
    past its hint, or the hint itself if there are none.
    """
    if not hints:
        return {}
    progress = await progress_hints(hints)
    newest = {room_id: max(hint, progress.get(room_id, 0)) for room_id, hint in hints.items()}
    past = await MessageDoc.find(
        {"$or": [{"room_id": room_id, "seq": {"$gt": hint}} for room_id, hint in newest.items()]}
    ).to_list()
    for message in past:
        newest[message.room_id] = max(newest[message.room_id], message.seq)
    return newest


async def messages_at(
    keys: Iterable[tuple[PydanticObjectId, int]],
) -> dict[tuple[PydanticObjectId, int], MessageDoc]:
    """The messages at these (room, seq) places, in one query."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    found = await MessageDoc.find(
        {"$or": [{"room_id": room_id, "seq": seq} for room_id, seq in wanted]}
    ).to_list()
    return {(message.room_id, message.seq): message for message in found}
