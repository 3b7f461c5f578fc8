"""Rooms: creating them, membership (with consent: ``services.invitations``), the
room list, hidden DIRECT rooms, and read markers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from beanie import PydanticObjectId
from bson.errors import InvalidId
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError
from pymongo.results import UpdateResult

from errors import BadUserInput, NotFound
from models import MembershipDoc, RoomDoc, RoomProgressDoc, UserDoc
from models.room import RoomKind, RoomRole, new_members_tag
from models.time import as_utc, utc_now
from pubsub import MembersChanged, ReadReceipt, RoomAdded, RoomChanged
from services.blocklist import refuse_if_blocked
from services.friends import FriendService
from services.invitations import InvitationService
from services.locks import Locks
from services.membership_events import logging_joins, logging_removal, logging_room_change
from services.paging import (
    INVALID_CURSOR,
    Page,
    checked_page_size,
    cursor_number,
    decode_cursor,
    encode_cursor,
)
from services.publisher import EventPublisher
from services.rate_limits import LimitName, RateLimiter
from services.room_access import NO_SUCH_ROOM, RoomAccess
from services.room_event_log import NothingChanged, RoomEventLog
from services.room_progress import RoomProgressWrites
from services.room_roles import (
    check_removal,
    heir_of,
    owner_of,
    require_group,
    require_manager,
    role_of,
    roles_after,
)
from services.sequence import latest_seq, progress_hints
from services.shown_text import refuse_hidden_characters

MAX_TITLE_CHARS = 100
ROOM_CURSOR = "room"
MEMBERSHIP_CURSOR = "member"
DEFAULT_MEMBERS_PAGE = 100
# The contract's most members a page of Room.memberships.
MAX_MEMBERSHIPS_PAGE = 1_000


def _pair_key(first: PydanticObjectId, second: PydanticObjectId) -> str:
    low, high = sorted((str(first), str(second)))
    return f"direct:{low}:{high}"


# Earlier than any activity: a room whose messages never moved its progress.
_NEVER = datetime.min.replace(tzinfo=UTC)


class _RoomActivity(BaseModel):
    """Projection: a room's id and own activity time."""

    id: PydanticObjectId = Field(alias="_id")
    last_activity_at: datetime


async def _message_activity(
    room_ids: list[PydanticObjectId],
) -> dict[PydanticObjectId, datetime]:
    """When each room's newest message was stored (rooms with a progress document)."""
    if not room_ids:
        return {}
    found = await RoomProgressDoc.find({"_id": {"$in": room_ids}}).to_list()
    return {progress.id: as_utc(progress.last_activity_at) for progress in found}


async def room_with_hint(room_id: PydanticObjectId) -> RoomDoc | None:
    """The room, its seq hint the higher of its own (rooms stored before progress
    documents) and its progress document's."""
    room = await RoomDoc.get(room_id)
    if room is not None:
        room.seq_hint = max(room.seq_hint, (await progress_hints([room_id])).get(room_id, 0))
    return room


def checked_title(title: str) -> str:
    """A group title as stored: trimmed, 1 to MAX_TITLE_CHARS characters, nothing hidden."""
    clean_title = title.strip()
    if not 1 <= len(clean_title) <= MAX_TITLE_CHARS:
        raise BadUserInput(f"title must be 1 to {MAX_TITLE_CHARS} characters long")
    refuse_hidden_characters(clean_title, "title", joiners=True)
    return clean_title


def _millis(when: datetime) -> int:
    return round(as_utc(when).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class RoomMember:
    """One member of a room: their role, and when they joined."""

    user_id: PydanticObjectId
    role: RoomRole
    joined_at: datetime


def membership_cursor(member: RoomMember) -> str:
    """The member, with their join time: a page goes on after them even once they left."""
    return encode_cursor(MEMBERSHIP_CURSOR, str(member.user_id), str(_millis(member.joined_at)))


async def _join_times(
    room: RoomDoc, user_ids: list[PydanticObjectId]
) -> dict[PydanticObjectId, datetime]:
    """When each of the members joined; the room's creation for a member whose
    membership document is missing (a creation or an invite cut short)."""
    found = await MembershipDoc.find({"room_id": room.id, "user_id": {"$in": user_ids}}).to_list()
    joined = {membership.user_id: as_utc(membership.joined_at) for membership in found}
    return {user_id: joined.get(user_id, as_utc(room.created_at)) for user_id in user_ids}


async def _hidden_rooms(
    viewer: UserDoc, room_ids: list[PydanticObjectId]
) -> dict[PydanticObjectId, datetime]:
    """Those of the viewer's rooms they hid, with when (by room and user: the
    memberships' unique index answers it)."""
    if not room_ids:
        return {}
    found = await MembershipDoc.find(
        {"room_id": {"$in": room_ids}, "user_id": viewer.id, "hidden_at": {"$ne": None}}
    ).to_list()
    return {
        membership.room_id: as_utc(membership.hidden_at)
        for membership in found
        if membership.hidden_at is not None
    }


async def set_own_view(
    room_id: PydanticObjectId, user_id: PydanticObjectId, **fields: datetime | None
) -> None:
    """Sets fields of the member's own view of the room (``MembershipDoc``); a member
    of a room stored before membership documents gets one."""
    changed = await MembershipDoc.find({"room_id": room_id, "user_id": user_id}).update_many(
        {"$set": fields}
    )
    if isinstance(changed, UpdateResult) and changed.matched_count == 0:
        with suppress(DuplicateKeyError):  # made by a concurrent call: set it there
            await MembershipDoc(room_id=room_id, user_id=user_id).insert()
        await MembershipDoc.find({"room_id": room_id, "user_id": user_id}).update_many(
            {"$set": fields}
        )


def room_cursor(room: RoomDoc) -> str:
    """Keyset cursor (activity time, id): it stays valid while the list reorders."""
    return encode_cursor(ROOM_CURSOR, str(_millis(room.last_activity_at)), str(room.id))


class RoomService:
    """The rules of rooms. Every method that reads a room checks membership first."""

    def __init__(
        self,
        publisher: EventPublisher,
        max_group_members: int,
        limits: RateLimiter,
        locks: Locks,
        access: RoomAccess,
        friends: FriendService,
        invitations: InvitationService,
        event_log: RoomEventLog,
    ) -> None:
        self._event_log = event_log
        self._progress = RoomProgressWrites()
        self._publisher = publisher
        self._friends = friends
        self._invitations = invitations
        self._max_group_members = max_group_members
        self._limits = limits
        self._locks = locks
        self._access = access

    async def room(self, room_id: PydanticObjectId) -> RoomDoc | None:
        """The room, whoever asks: for what a non-member may see of it (an invitation)."""
        return await RoomDoc.get(room_id)

    async def _require_users(self, user_ids: list[PydanticObjectId]) -> None:
        # A deleted account is no one to add to a room, as if it did not exist.
        found = await UserDoc.find({"_id": {"$in": user_ids}, "deletion_started_at": None}).count()
        if found != len(user_ids):
            raise NotFound("one or more users do not exist")

    async def create_direct(self, viewer: UserDoc, other_id: PydanticObjectId) -> RoomDoc:
        """The DIRECT room of the two users, created if they have none (race-safe)."""
        assert viewer.id is not None
        await self._limits.hit(LimitName.CREATE_ROOM, str(viewer.id))
        if other_id == viewer.id:
            raise BadUserInput("a direct room needs another user than yourself")
        await self._require_users([other_id])
        await refuse_if_blocked(
            viewer.id, [other_id], "you cannot open a direct room with this user"
        )
        key = _pair_key(viewer.id, other_id)
        if existing := await RoomDoc.find_one(RoomDoc.pair_key == key):
            assert existing.id is not None
            await set_own_view(existing.id, viewer.id, hidden_at=None)  # opened again: shown
            return existing
        members = [viewer.id, other_id]
        room = RoomDoc(kind=RoomKind.DIRECT, member_ids=members, pair_key=key)
        room.id = PydanticObjectId()  # chosen first: the logged events name the room
        try:
            async with logging_joins(self._event_log, room.id, members) as events:
                await room.insert()
        except DuplicateKeyError:
            # Another request created it first; the unique index decided (and the
            # events logged for this one are taken back).
            winner = await RoomDoc.find_one(RoomDoc.pair_key == key)
            assert winner is not None
            return winner
        await self._joined(room, members, events)
        return room

    async def create_group(
        self, viewer: UserDoc, title: str, member_ids: list[PydanticObjectId]
    ) -> RoomDoc:
        """A GROUP room with the viewer and the given users."""
        assert viewer.id is not None
        await self._limits.hit(LimitName.CREATE_ROOM, str(viewer.id))
        clean_title = checked_title(title)
        members = list(dict.fromkeys([viewer.id, *member_ids]))
        if len(members) > self._max_group_members:
            raise BadUserInput(f"a group room holds at most {self._max_group_members} members")
        added, invited = await self._consent(
            viewer.id, members[1:], "you cannot add one or more of these users"
        )
        room = RoomDoc(
            kind=RoomKind.GROUP,
            title=clean_title,
            member_ids=[viewer.id, *added],
            pair_key=f"group:{secrets.token_hex(12)}",
            owner_id=viewer.id,
        )
        room.id = PydanticObjectId()  # chosen first: the logged events name the room
        async with logging_joins(self._event_log, room.id, room.member_ids) as events:
            await room.insert()
        await self._joined(room, room.member_ids, events)
        await self._invitations.invite(room.id, viewer.id, invited)
        return room

    async def _consent(
        self, viewer_id: PydanticObjectId, user_ids: list[PydanticObjectId], refusal: str
    ) -> tuple[list[PydanticObjectId], list[PydanticObjectId]]:
        """Which of the users the viewer adds to a group at once (their friends) and
        which get an invitation instead (everyone else), refusing the whole call if
        any of them does not exist, blocks the viewer (FORBIDDEN, with the refusal),
        or may not be invited by the viewer now (RATE_LIMITED)."""
        await self._require_users(user_ids)
        await refuse_if_blocked(viewer_id, user_ids, refusal)
        friends = await self._friends.friends_among(viewer_id, user_ids)
        invited = [user_id for user_id in user_ids if user_id not in friends]
        await self._invitations.may_invite(viewer_id, invited)
        return [user_id for user_id in user_ids if user_id in friends], invited

    async def invite(
        self, room: RoomDoc, viewer: UserDoc, user_ids: list[PydanticObjectId]
    ) -> RoomDoc:
        """Adds the viewer's friends to a GROUP room and invites everyone else; users
        already in it are left as they are. The room as it is now is returned: the
        invited are not among its members until they accept.

        Concurrent invites to one room take turns (a lock in Redis), each checking the
        cap against the members as they are, so that together they never pass it.
        """
        assert viewer.id is not None and room.id is not None
        await self._limits.hit(LimitName.INVITE_MEMBERS, str(viewer.id))
        if room.kind is not RoomKind.GROUP:
            raise BadUserInput("members can only be invited to a GROUP room")
        asked = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in room.member_ids]
        if len(room.member_ids) + len(asked) > self._max_group_members:
            raise BadUserInput(f"a group room holds at most {self._max_group_members} members")
        added, invited = await self._consent(
            viewer.id, asked, "you cannot invite one or more of these users"
        )
        updated = await self._add(room, added)
        await self._invitations.invite(room.id, viewer.id, invited)
        return updated

    async def respond_to_invitation(
        self, viewer: UserDoc, invitation_id: PydanticObjectId, accept: bool
    ) -> RoomDoc | None:
        """Accepting joins the viewer to the room (returned) as an invite of a friend
        would; declining returns None and holds the inviter back (a cooldown)."""
        assert viewer.id is not None
        invitation = await self._invitations.pending(viewer.id, invitation_id)
        if not accept:
            await self._invitations.declined(invitation)
            return None
        room = await RoomDoc.get(invitation.room_id)
        assert room is not None  # rooms are never removed
        # Joined before the invitation goes: a join that fails (a full room) keeps it.
        updated = await self._add(room, [viewer.id])
        with suppress(NotFound):  # a second accept raced this one: joining is idempotent
            await self._invitations.answered(invitation)
        return updated

    async def _add(self, room: RoomDoc, user_ids: list[PydanticObjectId]) -> RoomDoc:
        """The room with the users in it; those new to it join (events and all)."""
        assert room.id is not None
        async with self._locks.hold(f"room-members:{room.id}"):
            updated, new, events = await self._add_members(room, user_ids)
        if new:
            self._access.members_changed(room.id)
            # The events wait for the broker: not under the lock.
            await self._joined(updated, new, events)
        return updated

    async def _add_members(
        self, room: RoomDoc, user_ids: list[PydanticObjectId]
    ) -> tuple[RoomDoc, list[PydanticObjectId], list[MembersChanged | RoomAdded]]:
        """The room with the users in it, which of them are new, and the logged events
        of their joining (under the lock)."""
        assert room.id is not None
        room = await RoomDoc.get(room.id) or room  # the members as they are now
        new = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in room.member_ids]
        if not new:
            return room, [], []
        if len(room.member_ids) + len(new) > self._max_group_members:
            raise BadUserInput(f"a group room holds at most {self._max_group_members} members")
        assert room.id is not None
        async with logging_joins(self._event_log, room.id, new) as events:
            await RoomDoc.find_one(RoomDoc.id == room.id).update(
                {
                    "$addToSet": {"member_ids": {"$each": new}},
                    "$max": {"last_activity_at": utc_now()},
                    "$set": {"members_tag": new_members_tag()},
                }
            )
        updated = await RoomDoc.get(room.id)
        assert updated is not None
        return updated, new, events

    async def leave(self, room: RoomDoc, viewer: UserDoc, *, spend_budget: bool = True) -> None:
        """Takes the viewer out of a GROUP room: no more reading, sending or receiving.

        A DIRECT room is hidden instead: out of the viewer's room list until a new
        message arrives in it. The viewer stays a member (history, messages and pushes
        stay theirs) and the other user sees no change. An account's deletion leaves
        all its groups this same way, without the budget.
        """
        assert viewer.id is not None and room.id is not None
        if spend_budget:
            await self._limits.hit(LimitName.LEAVE_ROOM, str(viewer.id))
        if room.kind is RoomKind.DIRECT:
            await set_own_view(room.id, viewer.id, hidden_at=utc_now())
            return
        await self.take_out(room.id, viewer.id)

    async def remove_member(
        self, room: RoomDoc, viewer: UserDoc, user_id: PydanticObjectId
    ) -> RoomDoc:
        """Takes another member out of a GROUP room, as the owner or an admin may."""
        assert viewer.id is not None and room.id is not None
        await self._limits.hit(LimitName.REMOVE_MEMBER, str(viewer.id))
        require_group(room)
        viewer_id = viewer.id
        return await self.take_out(
            room.id, user_id, authorize=lambda fresh: check_removal(fresh, viewer_id, user_id)
        )

    async def take_out(
        self,
        room_id: PydanticObjectId,
        user_id: PydanticObjectId,
        authorize: Callable[[RoomDoc], None] | None = None,
    ) -> RoomDoc:
        """Takes a member out of a room: the one path of a leave and of a removal.

        Under the room's members lock (so that it is not lost to an invite, and
        ``authorize`` judges the room as it is), the user leaves the members and the
        admins, the membership tag changes, and if they owned the room, its oldest
        admin (else its oldest member) owns it. Then this instance's send path
        forgets the room and a ``MembersChanged`` removing them ends their streams of
        the room on every instance (``live.room_stream``); a stream that misses
        the event sees the new tag on the next message. Taking out someone who is
        no longer in the room changes nothing (and logs nothing) but publishes again
        (without a position), so a retry after a failure half-way finishes the job.
        """
        removal = MembersChanged(room_id=str(room_id), added=(), removed=(str(user_id),))
        async with self._locks.hold(f"room-members:{room_id}"):
            room = await RoomDoc.get(room_id)
            if room is None:
                raise NotFound(NO_SUCH_ROOM)
            if authorize is not None:
                authorize(room)
            if user_id in room.member_ids:
                admins = [admin for admin in room.admin_ids if admin != user_id]
                owner = room.owner_id
                if owner_of(room) == user_id:
                    owner = heir_of(room, user_id)
                    admins = [admin for admin in admins if admin != owner]
                async with logging_removal(self._event_log, room_id, user_id) as removal:
                    await RoomDoc.find_one(RoomDoc.id == room_id).update(
                        {
                            "$pull": {"member_ids": user_id},
                            "$max": {"last_activity_at": utc_now()},
                            "$set": {
                                "members_tag": new_members_tag(),
                                "owner_id": owner,
                                "admin_ids": admins,
                            },
                        }
                    )
        self._access.members_changed(
            room_id
        )  # this instance refuses the leaver's next send at once
        await MembershipDoc.find(
            MembershipDoc.room_id == room_id, MembershipDoc.user_id == user_id
        ).delete()
        await self._publisher.publish(removal)
        return await self._room_now(room_id)

    async def rename(self, room: RoomDoc, viewer: UserDoc, title: str) -> RoomDoc:
        """A new title for a GROUP room, as its owner or an admin may give it."""
        assert viewer.id is not None and room.id is not None
        await self._limits.hit(LimitName.UPDATE_ROOM, str(viewer.id))
        require_group(room)
        clean_title = checked_title(title)
        async with self._locks.hold(f"room-members:{room.id}"):  # judged as the roles stand
            fresh = await self._room_now(room.id)
            require_manager(fresh, viewer.id, "rename it")
            async with logging_room_change(self._event_log, room.id) as changed:
                await RoomDoc.find_one(RoomDoc.id == room.id).update(
                    {"$set": {"title": clean_title}, "$max": {"last_activity_at": utc_now()}}
                )
        return await self._changed(room.id, changed)

    async def set_role(
        self, room: RoomDoc, viewer: UserDoc, user_id: PydanticObjectId, role: RoomRole
    ) -> RoomDoc:
        """Gives a member of a GROUP room a role, as its owner alone may; OWNER hands
        the room over (the old owner becomes an admin)."""
        assert viewer.id is not None and room.id is not None
        await self._limits.hit(LimitName.SET_MEMBER_ROLE, str(viewer.id))
        require_group(room)
        async with self._locks.hold(f"room-members:{room.id}"):  # judged as the roles stand
            fresh = await self._room_now(room.id)
            owner, admins = roles_after(fresh, viewer.id, user_id, role)
            if role is role_of(fresh, user_id) and fresh.owner_id == owner:
                return fresh  # nothing changes: nothing to tell
            async with logging_room_change(self._event_log, room.id) as changed:
                await RoomDoc.find_one(RoomDoc.id == room.id).update(
                    {"$set": {"owner_id": owner, "admin_ids": admins}}
                )
        return await self._changed(room.id, changed)

    async def _changed(self, room_id: PydanticObjectId, event: MembersChanged) -> RoomDoc:
        """The room after a change of its title or roles, told to its members (their
        roomActivity and roomUpdated, on every instance) by its logged event."""
        await self._publisher.publish(event)
        return await self._room_now(room_id)

    @staticmethod
    async def _room_now(room_id: PydanticObjectId) -> RoomDoc:
        room = await RoomDoc.get(room_id)
        if room is None:
            raise NotFound(NO_SUCH_ROOM)
        return room

    async def _joined(
        self,
        room: RoomDoc,
        user_ids: list[PydanticObjectId],
        events: list[MembersChanged | RoomAdded],
    ) -> None:
        """The users' own views of the room, and the logged events of their joining
        (``services.membership_events``) published."""
        assert room.id is not None
        for user_id in user_ids:
            with suppress(DuplicateKeyError):  # already a member: joining again changes nothing
                await MembershipDoc(room_id=room.id, user_id=user_id).insert()
        await self._invitations.joined(room.id, user_ids)
        for event in events:
            await self._publisher.publish(event)

    async def stored_message(self, room_id: PydanticObjectId, seq: int, when: datetime) -> None:
        """Moves the room's seq hint and message activity forward (never back), in its
        progress document: never in the room's own, which holds its members."""
        self._access.message_stored(room_id, seq)
        # With the moves of other rooms made meanwhile, in one write.
        await self._progress.moved(room_id, seq, when)

    async def list_for(
        self, viewer: UserDoc, first: int | None, after: str | None
    ) -> Page[RoomDoc]:
        """The viewer's rooms, most recent activity first.

        A room's activity is the later of its own (creation, membership changes) and
        its messages' (``RoomProgressDoc``): kept apart so that a send never writes
        the room's document, they are merged here for all the viewer's rooms.
        """
        size = checked_page_size(first, "first", default=20)
        before: tuple[datetime, PydanticObjectId] | None = None
        if after is not None:
            activity, after_id = decode_cursor(after, ROOM_CURSOR, 2)
            millis = cursor_number(activity)
            try:
                at = datetime.fromtimestamp(millis / 1000, UTC)  # past year 9999: ValueError
                before = (at, PydanticObjectId(after_id))
            except (ValueError, OverflowError, OSError, InvalidId, TypeError) as exc:
                raise BadUserInput(INVALID_CURSOR) from exc
        rooms = await RoomDoc.find({"member_ids": viewer.id}).project(_RoomActivity).to_list()
        messages_at = await _message_activity([room.id for room in rooms])
        hidden = await _hidden_rooms(viewer, [room.id for room in rooms])
        # A hidden room shows again once a message newer than its hiding arrived. It
        # is left out before the page is cut, so pages and cursors skip it alike.
        shown = [
            room
            for room in rooms
            if room.id not in hidden or messages_at.get(room.id, _NEVER) > hidden[room.id]
        ]
        order = sorted(
            (
                (max(as_utc(room.last_activity_at), messages_at.get(room.id, _NEVER)), room.id)
                for room in shown
            ),
            reverse=True,
        )
        if before is not None:
            order = [key for key in order if key < before]
        wanted = order[: size + 1]
        found = {
            room.id: room
            for room in await RoomDoc.find({"_id": {"$in": [key[1] for key in wanted]}}).to_list()
        }
        page: list[RoomDoc] = []
        for activity_at, wanted_id in wanted:
            if (room := found.get(wanted_id)) is not None:
                room.last_activity_at = activity_at  # as the list orders it (its cursor)
                page.append(room)
        return Page(
            page[:size], has_next_page=len(page) > size, has_previous_page=after is not None
        )

    def first_members(self, room: RoomDoc, first: int | None) -> list[PydanticObjectId]:
        """The ids of the room's first ``first`` (100 if null) members, oldest member first."""
        first = DEFAULT_MEMBERS_PAGE if first is None else first
        # No room holds more than the cap; the default page stays valid under a small cap.
        most = max(self._max_group_members, DEFAULT_MEMBERS_PAGE)
        if not 1 <= first <= most:
            raise BadUserInput(f"first must be between 1 and {most}")
        # Members are appended as they join, so the list is in joining order.
        return room.member_ids[:first]

    async def memberships(
        self, room: RoomDoc, first: int | None, after: str | None
    ) -> Page[RoomMember]:
        """A page of the room's members with their roles, oldest member first."""
        size = DEFAULT_MEMBERS_PAGE if first is None else first
        if not 0 <= size <= MAX_MEMBERSHIPS_PAGE:
            raise BadUserInput(f"first must be between 0 and {MAX_MEMBERSHIPS_PAGE}")
        members = room.member_ids
        start = 0
        if after is not None:
            user_part, joined_part = decode_cursor(after, MEMBERSHIP_CURSOR, 2)
            joined_millis = cursor_number(joined_part)
            if not PydanticObjectId.is_valid(user_part):
                raise BadUserInput(INVALID_CURSOR)
            if (user_id := PydanticObjectId(user_part)) in members:
                start = members.index(user_id) + 1
            else:  # they left since: go on with those who joined after them
                joined = await _join_times(room, members)
                start = next(
                    (
                        at
                        for at, each in enumerate(members)
                        if _millis(joined[each]) > joined_millis
                    ),
                    len(members),
                )
        chosen = members[start : start + size]
        joined = await _join_times(room, chosen)
        return Page(
            [RoomMember(each, role_of(room, each), joined[each]) for each in chosen],
            has_next_page=start + size < len(members),
            has_previous_page=start > 0,
        )

    async def mark_read(self, room: RoomDoc, viewer: UserDoc, seq: int) -> None:
        """Moves the viewer's read marker forward to seq (never back); a marker that
        does not move publishes nothing."""
        await self._limits.hit(LimitName.MARK_READ, str(viewer.id))
        if seq < 0:
            raise BadUserInput("seq must be 0 or more")
        # A marker past the newest message would count messages not sent yet as read.
        assert room.id is not None
        seq = min(seq, await latest_seq(room.id))
        behind = {"room_id": room.id, "user_id": viewer.id, "last_read_seq": {"$lt": seq}}
        if await MembershipDoc.find_one(behind) is None:
            return  # the marker would not move: nothing logged or told
        room_id = room.id
        # Only a marker that moved forward is news, to the viewer and to the room.
        with suppress(NothingChanged):
            async with self._event_log.record(
                room_id,
                lambda pos: ReadReceipt(
                    str(room_id),
                    str(viewer.id),
                    viewer.username,
                    viewer.display_name,
                    seq,
                    room.members_tag,
                    pos,
                ),
            ) as receipt:
                moved = await MembershipDoc.find(behind).update_many(
                    {"$max": {"last_read_seq": seq}}
                )
                if not (isinstance(moved, UpdateResult) and moved.modified_count):
                    raise NothingChanged  # a concurrent mark moved it as far first
            await self._publisher.publish(RoomChanged(user_id=str(viewer.id), room_id=str(room_id)))
            await self._publisher.publish(receipt)

    async def read_markers(
        self, viewer_id: PydanticObjectId, room_ids: list[PydanticObjectId]
    ) -> dict[PydanticObjectId, int]:
        """The viewer's read marker in each of the rooms (0 if none), in one query."""
        if not room_ids:
            return {}
        found = await MembershipDoc.find(
            {"user_id": viewer_id, "room_id": {"$in": list(set(room_ids))}}
        ).to_list()
        markers = {membership.room_id: membership.last_read_seq for membership in found}
        return {room_id: markers.get(room_id, 0) for room_id in room_ids}
