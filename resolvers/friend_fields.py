"""Friends, user search, and the friends' presence feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from models import FriendRequestDoc
from resolvers.access import require_viewer
from schema.context import Info
from schema.types import FriendRequest, Presence, User
from services.ids import parse_id


async def _friend_request(info: Info, request: FriendRequestDoc) -> FriendRequest:
    sender, recipient = await info.context.loaders.users.load_many([request.from_id, request.to_id])
    assert sender is not None and recipient is not None  # accounts are never deleted
    return FriendRequest(
        id=strawberry.ID(str(request.id)),
        from_=User.from_doc(sender),
        to=User.from_doc(recipient),
        status=request.status,
        created_at=request.created_at,
    )


async def search_users(info: Info, query: str, first: int | None = 20) -> list[User]:
    viewer = await require_viewer(info)
    found = await info.context.services.friends.search(viewer, query, first)
    return [User.from_doc(user) for user in found]


async def friends(info: Info) -> list[User]:
    viewer = await require_viewer(info)
    return [User.from_doc(user) for user in await info.context.services.friends.friends(viewer)]


async def friend_requests(info: Info) -> list[FriendRequest]:
    viewer = await require_viewer(info)
    pending = await info.context.services.friends.pending_requests(viewer)
    # Together, so that the users of every request load in one query.
    return list(await asyncio.gather(*(_friend_request(info, request) for request in pending)))


async def send_friend_request(info: Info, user_id: strawberry.ID) -> FriendRequest:
    viewer = await require_viewer(info)
    request = await info.context.services.friends.send_request(viewer, parse_id(user_id, "userId"))
    return await _friend_request(info, request)


async def respond_to_friend_request(
    info: Info, request_id: strawberry.ID, accept: bool
) -> FriendRequest:
    viewer = await require_viewer(info)
    request = await info.context.services.friends.respond(
        viewer, parse_id(request_id, "requestId"), accept
    )
    return await _friend_request(info, request)


async def remove_friend(info: Info, user_id: strawberry.ID) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.friends.remove(viewer, parse_id(user_id, "userId"))
    return True


async def presence_changed(info: Info) -> AsyncGenerator[Presence, None]:
    viewer = await require_viewer(info)
    # Closed with this resolver, not when garbage (resolvers/subscriptions.py says why).
    async with aclosing(info.context.services.presence.friends_presence(viewer)) as changes:
        async for presence in changes:
            yield Presence.from_service(presence)
