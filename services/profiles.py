"""Profiles: a user's display name and profile picture (updateProfile)."""

from __future__ import annotations

from beanie import PydanticObjectId

from errors import BadUserInput
from models import UserDoc
from services.accounts import AccountService, checked_display_name
from services.rate_limits import LimitName, RateLimiter
from services.uploads import UploadService


class ProfileService:
    """The rules of profile changes; the picture's own rules are the uploads'."""

    def __init__(
        self, accounts: AccountService, uploads: UploadService, limits: RateLimiter
    ) -> None:
        self._accounts = accounts
        self._uploads = uploads
        self._limits = limits

    async def update(
        self,
        viewer: UserDoc,
        display_name: str | None,
        avatar_upload_id: PydanticObjectId | None,
    ) -> UserDoc:
        """Changes what is given: the display name (signUp's rules), and the picture
        (an image upload of the viewer's that reached storage; the one it replaces is
        deleted). Returns the account as it now stands."""
        assert viewer.id is not None
        if display_name is None and avatar_upload_id is None:
            raise BadUserInput("give a displayName, an avatarUploadId, or both")
        await self._limits.hit(LimitName.UPDATE_PROFILE, str(viewer.id))
        changes: dict[str, object] = {}
        if display_name is not None:
            shown = checked_display_name(display_name)
            changes.update(display_name=shown, display_name_key=shown.lower())
        stored = await UserDoc.get(viewer.id)
        assert stored is not None
        replaced = stored.avatar_upload_id
        if avatar_upload_id is not None:
            await self._uploads.make_avatar(stored, avatar_upload_id)
            changes["avatar_upload_id"] = avatar_upload_id
        await UserDoc.find_one({"_id": viewer.id}).update({"$set": changes})
        if avatar_upload_id is not None and replaced is not None and replaced != avatar_upload_id:
            await self._uploads.discard(replaced)
        for field, value in changes.items():
            setattr(stored, field, value)
        self._accounts.remember(stored)
        return stored
