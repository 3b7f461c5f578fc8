"""signUp, logIn, logOut, me, user."""

from __future__ import annotations

import strawberry

from resolvers.access import current_session_id, require_viewer
from schema.context import Info
from schema.types import AuthPayload, User
from services.ids import parse_id


async def sign_up(
    info: Info, username: str, password: str, display_name: str | None = None
) -> AuthPayload:
    session = await info.context.services.accounts.sign_up(
        username, password, display_name, info.context.client_address
    )
    return AuthPayload(token=session.token, user=User.from_doc(session.user))


async def log_in(info: Info, username: str, password: str) -> AuthPayload:
    session = await info.context.services.accounts.log_in(
        username, password, info.context.client_address
    )
    return AuthPayload(token=session.token, user=User.from_doc(session.user))


async def log_out(info: Info) -> bool:
    viewer = await require_viewer(info)
    assert info.context.token is not None
    await info.context.services.accounts.log_out(info.context.token, viewer)
    await info.context.services.devices.forget_session(current_session_id(info))
    return True


async def me(info: Info) -> User:
    return User.from_doc(await require_viewer(info))


async def user(info: Info, id: strawberry.ID) -> User | None:
    await require_viewer(info)
    found = await info.context.services.accounts.get(parse_id(id, "id"))
    return User.from_doc(found) if found else None
