"""Who blocks whom: the reads the other services check before they let users meet.

A refusal says only that the action is not allowed, never that a block is the
reason: a blocked user is not told who blocked them.
"""

from __future__ import annotations

from collections.abc import Iterable

from beanie import PydanticObjectId

from errors import Forbidden
from models import BlockDoc


async def blocks(blocker_id: PydanticObjectId, blocked_id: PydanticObjectId) -> bool:
    """Whether ``blocker_id`` blocks ``blocked_id``."""
    found = await BlockDoc.find_one(
        BlockDoc.blocker_id == blocker_id, BlockDoc.blocked_id == blocked_id
    )
    return found is not None


async def blockers_among(
    user_ids: Iterable[PydanticObjectId], blocked_id: PydanticObjectId
) -> set[PydanticObjectId]:
    """Those of the users who block ``blocked_id``."""
    candidates = list(set(user_ids))
    if not candidates:
        return set()
    found = await BlockDoc.find(
        {"blocked_id": blocked_id, "blocker_id": {"$in": candidates}}
    ).to_list()
    return {block.blocker_id for block in found}


async def refuse_if_blocked(
    actor_id: PydanticObjectId, target_ids: Iterable[PydanticObjectId], refusal: str
) -> None:
    """FORBIDDEN with the refusal's text if any of the targets blocks the actor."""
    if await blockers_among(target_ids, actor_id):
        raise Forbidden(refusal)
