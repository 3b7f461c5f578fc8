"""The ids of the rooms a user is in: one indexed read of the rooms by member."""

from __future__ import annotations

from beanie import PydanticObjectId
from pydantic import BaseModel, Field

from models import RoomDoc


class _RoomId(BaseModel):
    """Projection: a room's id alone."""

    id: PydanticObjectId = Field(alias="_id")


async def joined_room_ids(user_id: PydanticObjectId) -> list[PydanticObjectId]:
    """Every room the user is in now."""
    rooms = await RoomDoc.find({"member_ids": user_id}).project(_RoomId).to_list()
    return [room.id for room in rooms]
