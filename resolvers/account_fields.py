"""signUp, logIn, logOut, me, user; sessions, endSession, changePassword, deleteAccount."""

from __future__ import annotations

import strawberry

from resolvers.access import current_session_id, require_viewer
from schema.context import Info
from schema.types import AuthPayload, Session, User
from services.ids import parse_id


async def sign_up(
    info: Info, username: str, password: str, display_name: str | None = None
) -> AuthPayload:
    context = info.context
    session = await context.services.accounts.sign_up(
        username, password, display_name, context.client_address, context.user_agent
    )
    return AuthPayload(token=session.token, user=User.from_doc(session.user))


async def log_in(info: Info, username: str, password: str) -> AuthPayload:
    context = info.context
    session = await context.services.accounts.log_in(
        username, password, context.client_address, context.user_agent
    )
    return AuthPayload(token=session.token, user=User.from_doc(session.user))


async def log_out(info: Info) -> bool:
    viewer = await require_viewer(info)
    assert info.context.token is not None
    await info.context.services.accounts.log_out(info.context.token, viewer)
    return True


async def sessions(info: Info) -> list[Session]:
    viewer = await require_viewer(info)
    records = await info.context.services.accounts.sessions_of(viewer)
    return [Session.from_record(record, current_session_id(info)) for record in records]


async def end_session(info: Info, session_id: strawberry.ID) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.accounts.end_session(viewer, str(session_id))
    return True


async def change_password(info: Info, current_password: str, new_password: str) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.accounts.change_password(
        viewer,
        current_session_id(info),
        current_password,
        new_password,
        info.context.client_address,
    )
    return True


async def delete_account(info: Info, password: str) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.deletions.delete(viewer, password, info.context.client_address)
    return True


async def me(info: Info) -> User:
    return User.from_doc(await require_viewer(info))


async def user(info: Info, id: strawberry.ID) -> User | None:
    await require_viewer(info)
    found = await info.context.services.accounts.get(parse_id(id, "id"))
    return User.from_doc(found) if found else None
