"""Push devices: registering and unregistering a user's device tokens."""

from __future__ import annotations

import hashlib

from beanie import PydanticObjectId, SortDirection
from pymongo.errors import DuplicateKeyError

from errors import BadUserInput
from models import PushDeviceDoc, UserDoc
from models.push import PushPlatform
from models.time import utc_now

MAX_TOKEN_BYTES = 4 * 1024
MAX_DEVICES_PER_USER = 10


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceService:
    """A token belongs to one user at a time; a user keeps at most ten devices."""

    def __init__(self, platforms: frozenset[PushPlatform]) -> None:
        self._platforms = platforms  # the platforms this deployment can push to

    async def register(self, viewer: UserDoc, platform: PushPlatform, token: str) -> PushDeviceDoc:
        """Registers (or moves to the viewer) a device token; the oldest past ten goes."""
        assert viewer.id is not None
        if platform not in self._platforms:
            raise BadUserInput(f"this server is not configured to push to {platform.value}")
        if not token.strip() or len(token.encode()) > MAX_TOKEN_BYTES:
            raise BadUserInput(f"token must be 1 to {MAX_TOKEN_BYTES} bytes long")
        key = token_hash(token)
        device = await PushDeviceDoc.find_one(PushDeviceDoc.token_hash == key)
        if device is None:
            device = PushDeviceDoc(
                user_id=viewer.id, platform=platform, token=token, token_hash=key
            )
            try:
                await device.insert()
            except DuplicateKeyError:
                device = await PushDeviceDoc.find_one(PushDeviceDoc.token_hash == key)
                assert device is not None
        if device.user_id != viewer.id or device.platform != platform:
            # The device now belongs to whoever registered it last.
            device.user_id, device.platform, device.created_at = viewer.id, platform, utc_now()
            await device.save()
        await self._keep_newest(viewer.id)
        return device

    async def _keep_newest(self, user_id: PydanticObjectId) -> None:
        devices = (
            await PushDeviceDoc.find(PushDeviceDoc.user_id == user_id)
            .sort([("created_at", SortDirection.DESCENDING)])
            .to_list()
        )
        for stale in devices[MAX_DEVICES_PER_USER:]:
            await stale.delete()

    async def unregister(self, viewer: UserDoc, token: str) -> bool:
        """Removes the viewer's own device with this token; whether there was one."""
        device = await PushDeviceDoc.find_one(PushDeviceDoc.token_hash == token_hash(token))
        if device is None or device.user_id != viewer.id:
            return False
        await device.delete()
        return True

    async def of_users(self, user_ids: list[PydanticObjectId]) -> list[PushDeviceDoc]:
        if not user_ids:
            return []
        return await PushDeviceDoc.find({"user_id": {"$in": user_ids}}).to_list()

    async def remove(self, device: PushDeviceDoc) -> None:
        await device.delete()
