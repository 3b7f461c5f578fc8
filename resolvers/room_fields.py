"""Rooms: create, invite, leave, rename, remove, roles, list, read, mute, typing."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models.room import RoomRole
from resolvers.access import require_member, require_viewer, require_writer
from schema.context import Info
from schema.types import PageInfo, Room, RoomConnection, RoomEdge
from services.ids import parse_id, parse_ids
from services.rooms import room_cursor


async def create_direct_room(info: Info, user_id: strawberry.ID) -> Room:
    viewer = await require_viewer(info)
    room = await info.context.services.rooms.create_direct(viewer, parse_id(user_id, "userId"))
    return Room.from_doc(room)


async def create_group_room(info: Info, title: str, member_ids: list[strawberry.ID]) -> Room:
    viewer = await require_viewer(info)
    members = parse_ids(list(member_ids), "memberIds")
    return Room.from_doc(await info.context.services.rooms.create_group(viewer, title, members))


async def invite_members(info: Info, room_id: strawberry.ID, user_ids: list[strawberry.ID]) -> Room:
    viewer, room = await require_member(info, room_id)
    invited = parse_ids(list(user_ids), "userIds")
    return Room.from_doc(await info.context.services.rooms.invite(room, viewer, invited))


async def leave_room(info: Info, room_id: strawberry.ID) -> bool:
    viewer, room = await require_member(info, room_id)
    await info.context.services.rooms.leave(room, viewer)
    await info.context.services.typing.left(room_id, viewer)
    return True


async def update_room(info: Info, room_id: strawberry.ID, title: str) -> Room:
    viewer, room = await require_member(info, room_id)
    return Room.from_doc(await info.context.services.rooms.rename(room, viewer, title))


async def remove_member(info: Info, room_id: strawberry.ID, user_id: strawberry.ID) -> Room:
    viewer, room = await require_member(info, room_id)
    services, removed = info.context.services, parse_id(user_id, "userId")
    after = await services.rooms.remove_member(room, viewer, removed)
    if (user := await services.accounts.get(removed)) is not None:
        await services.typing.left(room_id, user)  # as a leaver's, their typing ends at once
    return Room.from_doc(after)


async def set_member_role(
    info: Info, room_id: strawberry.ID, user_id: strawberry.ID, role: RoomRole
) -> Room:
    viewer, room = await require_member(info, room_id)
    member = parse_id(user_id, "userId")
    return Room.from_doc(await info.context.services.rooms.set_role(room, viewer, member, role))


async def mute_room(info: Info, room_id: strawberry.ID, until: datetime | None = None) -> Room:
    viewer, room = await require_member(info, room_id)
    await info.context.services.mutes.mute(room, viewer, until)
    return Room.from_doc(room)


async def unmute_room(info: Info, room_id: strawberry.ID) -> Room:
    viewer, room = await require_member(info, room_id)
    await info.context.services.mutes.unmute(room, viewer)
    return Room.from_doc(room)


async def set_typing(info: Info, room_id: strawberry.ID, typing: bool) -> bool:
    viewer, room = await require_writer(info, room_id)
    await info.context.services.typing.set_typing(room, viewer, typing)
    return True


async def mark_read(info: Info, room_id: strawberry.ID, seq: int) -> Room:
    viewer, room = await require_writer(info, room_id)
    await info.context.services.rooms.mark_read(room, viewer, seq)
    return Room.from_doc(room)


async def rooms(info: Info, first: int | None = 20, after: str | None = None) -> RoomConnection:
    viewer = await require_viewer(info)
    page = await info.context.services.rooms.list_for(viewer, first, after)
    edges = [RoomEdge(cursor=room_cursor(room), node=Room.from_doc(room)) for room in page.items]
    return RoomConnection(
        edges=edges,
        page_info=PageInfo.of(page, [edge.cursor for edge in edges]),
    )


async def room(info: Info, id: strawberry.ID) -> Room | None:
    _, found = await require_member(info, id)
    return Room.from_doc(found)
