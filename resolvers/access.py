"""Who is asking: every resolver but signUp and logIn starts here."""

from __future__ import annotations

import strawberry

from auth.sessions import session_id
from models import RoomDoc, UserDoc
from schema.context import Info
from services.ids import parse_id
from services.rate_limits import LimitName


async def require_viewer(info: Info, spending: LimitName | None = None) -> UserDoc:
    """The authenticated viewer; UNAUTHENTICATED without a valid session token. With
    ``spending``, one call of that budget of the viewer is spent too (RATE_LIMITED
    when it is empty), beside the session's check."""
    context = info.context
    if context.over_websocket:
        # Checked again for every operation of a socket; a storm's checks share reads.
        context.viewer, _ = await context.services.accounts.open_session(context.token)
        if spending is not None:
            await context.services.accounts.spend(spending, context.viewer)
    elif context.viewer is None:
        context.viewer = await context.services.accounts.user_for_token(context.token, spending)
    elif spending is not None:
        await context.services.accounts.spend(spending, context.viewer)
    return context.viewer


def current_session_id(info: Info) -> str:
    """The id of the session the request (or socket) runs in; call after require_viewer."""
    assert info.context.token is not None
    return session_id(info.context.token)


async def require_member(info: Info, room_id: strawberry.ID) -> tuple[UserDoc, RoomDoc]:
    """The viewer and the room; NOT_FOUND or FORBIDDEN unless the viewer is in it."""
    viewer = await require_viewer(info)
    room = await info.context.services.access.require_member(parse_id(room_id, "roomId"), viewer)
    return viewer, room


async def require_writer(info: Info, room_id: strawberry.ID) -> tuple[UserDoc, RoomDoc]:
    """``require_member``, and FORBIDDEN too in a DIRECT room a block closed."""
    viewer = await require_viewer(info)
    room = await info.context.services.access.require_writer(parse_id(room_id, "roomId"), viewer)
    return viewer, room
