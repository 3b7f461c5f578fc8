"""createUpload and updateProfile: files sent straight to storage, and the profile."""

from __future__ import annotations

import strawberry

from resolvers.access import require_member, require_viewer
from schema.context import Info
from schema.files import UploadTicket
from schema.types import User
from services.ids import parse_id


async def create_upload(
    info: Info, room_id: strawberry.ID, filename: str, content_type: str, size: int
) -> UploadTicket:
    viewer, room = await require_member(info, room_id)
    upload, grant = await info.context.services.uploads.create(
        room, viewer, filename, content_type, size
    )
    return UploadTicket.of(upload, grant)


async def update_profile(
    info: Info, display_name: str | None = None, avatar_upload_id: strawberry.ID | None = None
) -> User:
    viewer = await require_viewer(info)
    avatar = parse_id(avatar_upload_id, "avatarUploadId") if avatar_upload_id else None
    updated = await info.context.services.profiles.update(viewer, display_name, avatar)
    return User.from_doc(updated)
