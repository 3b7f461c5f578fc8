"""Who may do what in a GROUP room: its owner, its admins and its members.

Roles are stored on the room (``RoomDoc.owner_id``, ``RoomDoc.admin_ids``) and read
only through ``owner_of`` and ``role_of``, so that a room stored before roles, or an
owner id left behind by a member who is gone, reads the same everywhere: the owner is
the stored one while they are a member, else the oldest admin, else the oldest member
(members are kept in joining order). A room created before roles thus reads its
creator as owner while the creator is in it. The same rule picks who owns next when
the owner leaves or is taken out.
"""

from __future__ import annotations

from beanie import PydanticObjectId

from errors import BadUserInput, Forbidden
from models import RoomDoc
from models.room import RoomKind, RoomRole

# Roles that may rename the room and take members out.
MANAGERS = frozenset({RoomRole.OWNER, RoomRole.ADMIN})
DIRECT_HAS_NO_ROLES = "a DIRECT room has no title, roles or removals: only GROUP rooms do"


def owner_of(room: RoomDoc) -> PydanticObjectId | None:
    """The room's owner; None for a DIRECT room or a room nobody is in."""
    if room.kind is not RoomKind.GROUP or not room.member_ids:
        return None
    if room.owner_id in room.member_ids:
        return room.owner_id
    admins = set(room.admin_ids)
    return next((member for member in room.member_ids if member in admins), room.member_ids[0])


def role_of(room: RoomDoc, user_id: PydanticObjectId) -> RoomRole:
    """The member's role (MEMBER for every member of a DIRECT room)."""
    if user_id == owner_of(room):
        return RoomRole.OWNER
    if room.kind is RoomKind.GROUP and user_id in room.admin_ids:
        return RoomRole.ADMIN
    return RoomRole.MEMBER


def heir_of(room: RoomDoc, leaver_id: PydanticObjectId) -> PydanticObjectId | None:
    """Who owns the room once ``leaver_id``, its owner, is out of it: the oldest
    admin, else the oldest member (None when nobody is left)."""
    remaining = room.model_copy(
        update={
            "member_ids": [member for member in room.member_ids if member != leaver_id],
            "owner_id": None,
        }
    )
    return owner_of(remaining)


def require_group(room: RoomDoc) -> None:
    """BAD_USER_INPUT unless the room is a GROUP room."""
    if room.kind is not RoomKind.GROUP:
        raise BadUserInput(DIRECT_HAS_NO_ROLES)


def require_manager(room: RoomDoc, viewer_id: PydanticObjectId, action: str) -> RoomRole:
    """The viewer's role if it is OWNER or ADMIN; FORBIDDEN otherwise."""
    role = role_of(room, viewer_id)
    if role not in MANAGERS:
        raise Forbidden(f"only the owner and admins of this group may {action}")
    return role


def require_member_of(room: RoomDoc, user_id: PydanticObjectId) -> None:
    """BAD_USER_INPUT unless the user is in the room (a role or a removal names a member)."""
    if user_id not in room.member_ids:
        raise BadUserInput("this user is not a member of this room")


def check_removal(room: RoomDoc, viewer_id: PydanticObjectId, user_id: PydanticObjectId) -> None:
    """Whether the viewer may take the user out: the owner takes out anyone but
    themself, an admin takes out members only, nobody takes out the owner."""
    if user_id == viewer_id:
        raise BadUserInput("to leave a room yourself, use leaveRoom")
    viewer_role = require_manager(room, viewer_id, "remove members")
    require_member_of(room, user_id)
    target_role = role_of(room, user_id)
    if target_role is RoomRole.OWNER:
        raise Forbidden("nobody can remove the owner of a group")
    if viewer_role is RoomRole.ADMIN and target_role is not RoomRole.MEMBER:
        raise Forbidden("an admin can only remove members, not other admins")


def roles_after(
    room: RoomDoc, viewer_id: PydanticObjectId, user_id: PydanticObjectId, role: RoomRole
) -> tuple[PydanticObjectId | None, list[PydanticObjectId]]:
    """The room's (owner, admins) once the viewer gives the user ``role``; FORBIDDEN
    unless the viewer owns the room. OWNER hands ownership over: the old owner
    becomes an admin."""
    if role_of(room, viewer_id) is not RoomRole.OWNER:
        raise Forbidden("only the owner of this group may change roles")
    if user_id == viewer_id:
        raise BadUserInput("you own this group: make another member OWNER to hand it over")
    require_member_of(room, user_id)
    admins = [admin for admin in room.admin_ids if admin != user_id and admin in room.member_ids]
    if role is RoomRole.OWNER:
        return user_id, [*admins, viewer_id]
    if role is RoomRole.ADMIN:
        admins.append(user_id)
    return viewer_id, admins
