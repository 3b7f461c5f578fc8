"""Group invitations: the viewer's pending ones, and their answer."""

from __future__ import annotations

import strawberry

from models import RoomInvitationDoc
from models.time import as_utc
from resolvers.access import require_viewer
from schema.context import Context, Info
from schema.types import Room, RoomInvitation, User
from services.ids import parse_id


async def room_invitation(info: Info, invitation: RoomInvitationDoc) -> RoomInvitation | None:
    return await shown_invitation(info.context, invitation)


async def shown_invitation(
    context: Context, invitation: RoomInvitationDoc
) -> RoomInvitation | None:
    """The invitation as its invitee sees it; None once its room or inviter is gone."""
    room = await context.services.rooms.room(invitation.room_id)
    inviter = await context.loaders.users.load(invitation.inviter_id)
    if room is None or inviter is None:
        return None
    return RoomInvitation(
        id=strawberry.ID(str(invitation.id)),
        room=Room.from_doc(room, preview=True),
        inviter=User.from_doc(inviter),
        created_at=as_utc(invitation.created_at),
    )


async def room_invitations(info: Info) -> list[RoomInvitation]:
    viewer = await require_viewer(info)
    assert viewer.id is not None
    pending = await info.context.services.invitations.pending_for(viewer.id)
    shown = [await room_invitation(info, invitation) for invitation in pending]
    return [invitation for invitation in shown if invitation is not None]


async def respond_to_room_invitation(
    info: Info, invitation_id: strawberry.ID, accept: bool
) -> Room | None:
    viewer = await require_viewer(info)
    joined = await info.context.services.rooms.respond_to_invitation(
        viewer, parse_id(invitation_id, "invitationId"), accept
    )
    return Room.from_doc(joined) if joined is not None else None
