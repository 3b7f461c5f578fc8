"""The logged events of membership changes: who joined, who was taken out, what changed.

Each membership change of a room is logged (``services.room_event_log``) before it is
made, one entry per event it publishes: a join logs the room's ``MembersChanged`` and
one ``RoomAdded`` for each user put in (about that user, on their own route); a
removal logs a ``MembersChanged`` about the removed user, so that it is replayed to
them after they left; a change of title or roles logs an empty ``MembersChanged``.
The room service makes the change inside the block and publishes the events after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from beanie import PydanticObjectId

from pubsub import MembersChanged, RoomAdded
from services.room_event_log import RoomEventLog


@asynccontextmanager
async def logging_joins(
    event_log: RoomEventLog, room_id: PydanticObjectId, user_ids: Sequence[PydanticObjectId]
) -> AsyncIterator[list[MembersChanged | RoomAdded]]:
    """The events of the users joining the room, in the order they are to be published
    (the room's first), each logged with its position; if the block raises, every
    entry is taken back."""
    async with AsyncExitStack() as entries:
        joined = await entries.enter_async_context(
            event_log.record(
                room_id,
                lambda pos: MembersChanged(
                    room_id=str(room_id), added=tuple(map(str, user_ids)), removed=(), pos=pos
                ),
            )
        )
        events: list[MembersChanged | RoomAdded] = [joined]
        for user_id in user_ids:
            added = await entries.enter_async_context(
                event_log.record(room_id, _room_added(room_id, user_id), about=[user_id])
            )
            events.append(added)
        yield events


def _room_added(room_id: PydanticObjectId, user_id: PydanticObjectId) -> Callable[[int], RoomAdded]:
    return lambda pos: RoomAdded(user_id=str(user_id), room_id=str(room_id), pos=pos)


def logging_removal(
    event_log: RoomEventLog, room_id: PydanticObjectId, user_id: PydanticObjectId
) -> AbstractAsyncContextManager[MembersChanged]:
    """The event of the user taken out of the room, logged about them."""
    return event_log.record(
        room_id,
        lambda pos: MembersChanged(
            room_id=str(room_id), added=(), removed=(str(user_id),), pos=pos
        ),
        about=[user_id],
    )


def logging_room_change(
    event_log: RoomEventLog, room_id: PydanticObjectId
) -> AbstractAsyncContextManager[MembersChanged]:
    """The event of a change of the room's title or roles (no one joins or leaves)."""
    return event_log.record(
        room_id, lambda pos: MembersChanged(room_id=str(room_id), added=(), removed=(), pos=pos)
    )
