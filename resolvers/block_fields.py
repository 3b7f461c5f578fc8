"""blockUser, unblockUser, blockedUsers."""

from __future__ import annotations

import strawberry

from resolvers.access import require_viewer
from schema.context import Info
from schema.types import User
from services.ids import parse_id


async def block_user(info: Info, user_id: strawberry.ID) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.blocks.block(viewer, parse_id(user_id, "userId"))
    return True


async def unblock_user(info: Info, user_id: strawberry.ID) -> bool:
    viewer = await require_viewer(info)
    await info.context.services.blocks.unblock(viewer, parse_id(user_id, "userId"))
    return True


async def blocked_users(info: Info) -> list[User]:
    viewer = await require_viewer(info)
    return [
        User.from_doc(user) for user in await info.context.services.blocks.blocked_users(viewer)
    ]
