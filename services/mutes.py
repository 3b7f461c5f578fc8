"""Muting: a member asks for no push of a room's messages until a time.

A mute is the member's own (``MembershipDoc.muted_until``) and ends by itself: every
reader compares it with the time of reading, so nothing has to clear it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId

from errors import BadUserInput
from models import MembershipDoc, RoomDoc, UserDoc
from models.time import as_utc, utc_now
from services.rate_limits import LimitName, RateLimiter
from services.rooms import set_own_view

# A mute with no end (``until`` null) is stored as the last day datetimes hold, so
# that every reader's one comparison with now holds for it too.
MUTED_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
# The furthest a timed mute may reach: a year on is a client's "forever", and a
# client meaning that says so with null.
MAX_MUTE = timedelta(days=366)


def _in_utc(moment: datetime) -> datetime:
    """A client's time in UTC; BAD_USER_INPUT for one past the ends of the calendar
    once its offset is applied (0001-01-01T00:00+01:00)."""
    try:
        return as_utc(moment)
    except OverflowError as exc:
        raise BadUserInput("until is not a time the server can hold") from exc


class MuteService:
    """The rules of muting; the push worker asks ``muted_among``."""

    def __init__(self, limits: RateLimiter) -> None:
        self._limits = limits

    async def mute(self, room: RoomDoc, viewer: UserDoc, until: datetime | None) -> None:
        """No push of the room to the viewer until ``until`` (null: until unmuted).
        BAD_USER_INPUT for a time not in the future or more than a year ahead."""
        assert room.id is not None and viewer.id is not None
        await self._limits.hit(LimitName.MUTE_ROOM, str(viewer.id))
        now = utc_now()
        if until is None:
            until = MUTED_FOREVER
        elif (until := _in_utc(until)) <= now:
            raise BadUserInput("until must be in the future")
        elif until > now + MAX_MUTE:
            raise BadUserInput(
                f"until is at most {MAX_MUTE.days} days ahead; pass null to mute until unmuted"
            )
        await set_own_view(room.id, viewer.id, muted_until=until)

    async def unmute(self, room: RoomDoc, viewer: UserDoc) -> None:
        """Ends the viewer's mute of the room, if any (idempotent)."""
        assert room.id is not None and viewer.id is not None
        await self._limits.hit(LimitName.MUTE_ROOM, str(viewer.id))
        await set_own_view(room.id, viewer.id, muted_until=None)

    async def muted_until(
        self, viewer_id: PydanticObjectId, room_ids: list[PydanticObjectId]
    ) -> dict[PydanticObjectId, datetime | None]:
        """When the viewer's mute of each room ends; None where it is not muted now."""
        if not room_ids:
            return {}
        found = await MembershipDoc.find(
            {"user_id": viewer_id, "room_id": {"$in": list(set(room_ids))}}
        ).to_list()
        now = utc_now()
        ends = {
            membership.room_id: as_utc(membership.muted_until)
            for membership in found
            if membership.muted_until is not None and as_utc(membership.muted_until) > now
        }
        return {room_id: ends.get(room_id) for room_id in room_ids}


async def muted_among(
    room_id: PydanticObjectId, user_ids: Iterable[PydanticObjectId], sent_at: datetime
) -> set[PydanticObjectId]:
    """Those of the room's members whose mute covers a message sent at ``sent_at``.

    The message's time decides, not the time its push is decided: a push worker that
    is behind must not push what was sent while the member had the room muted, and a
    mute set since then covers it too (it is still unread news the member silenced).
    """
    candidates = list(set(user_ids))
    if not candidates:
        return set()
    found = await MembershipDoc.find(
        {"room_id": room_id, "user_id": {"$in": candidates}, "muted_until": {"$gt": sent_at}}
    ).to_list()
    return {membership.user_id for membership in found}
