"""Push devices: registering and unregistering a user's device tokens.

A device belongs to the session that registered it and goes with it, however the
session ends: its logOut removes it at once; an expiry, the per-user session cap or
any other end is found when the device is next due a push (one Redis round trip
for all of a message's devices), and the device is removed then.
"""

from __future__ import annotations

import hashlib
import logging

from beanie import PydanticObjectId, SortDirection
from pymongo.errors import DuplicateKeyError

from auth.sessions import SessionStore
from errors import BadUserInput
from models import PushDeviceDoc, UserDoc
from models.push import PushPlatform
from models.time import utc_now
from services.rate_limits import LimitName, RateLimiter

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 4 * 1024
MAX_DEVICES_PER_USER = 10


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceService:
    """A token belongs to one user at a time; a user keeps at most ten devices."""

    def __init__(
        self, platforms: frozenset[PushPlatform], sessions: SessionStore, limits: RateLimiter
    ) -> None:
        self._platforms = platforms  # the platforms this deployment can push to
        self._sessions = sessions
        self._limits = limits

    async def register(
        self, viewer: UserDoc, platform: PushPlatform, token: str, session_id: str
    ) -> PushDeviceDoc:
        """Registers (or moves to the viewer) a device token; the oldest past ten goes.

        The device is tied to the session that registered it, and goes with it.
        """
        assert viewer.id is not None
        await self._limits.hit(LimitName.REGISTER_PUSH_DEVICE, str(viewer.id))
        if platform not in self._platforms:
            raise BadUserInput(f"this server is not configured to push to {platform.value}")
        if not token.strip() or len(token.encode()) > MAX_TOKEN_BYTES:
            raise BadUserInput(f"token must be 1 to {MAX_TOKEN_BYTES} bytes long")
        key = token_hash(token)
        device = await PushDeviceDoc.find_one(PushDeviceDoc.token_hash == key)
        if device is None:
            device = PushDeviceDoc(
                user_id=viewer.id,
                platform=platform,
                token=token,
                token_hash=key,
                session_id=session_id,
            )
            try:
                await device.insert()
            except DuplicateKeyError:
                device = await PushDeviceDoc.find_one(PushDeviceDoc.token_hash == key)
                assert device is not None
        if device.user_id != viewer.id:
            # The device now belongs to whoever registered it last: a phone that
            # changed hands, or a token someone else learnt. Worth a trace either way.
            logger.info(
                "push token moved to another user",
                extra={"from_user": str(device.user_id), "to_user": str(viewer.id)},
            )
        if (device.user_id, device.platform, device.session_id) != (
            viewer.id,
            platform,
            session_id,
        ):
            device.user_id, device.platform, device.created_at = viewer.id, platform, utc_now()
            device.session_id = session_id
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

    async def forget_session(self, session_id: str) -> int:
        """Removes the devices a session registered (at its logOut); returns how many."""
        result = await PushDeviceDoc.find(PushDeviceDoc.session_id == session_id).delete()
        return result.deleted_count if result is not None else 0

    async def forget_user(self, user_id: PydanticObjectId) -> None:
        """Removes every device of the user, tied to a session or not (a deletion)."""
        await PushDeviceDoc.find(PushDeviceDoc.user_id == user_id).delete()

    async def of_users(self, user_ids: list[PydanticObjectId]) -> list[PushDeviceDoc]:
        """The users' devices whose session is still live; the others are removed."""
        if not user_ids:
            return []
        devices = await PushDeviceDoc.find({"user_id": {"$in": user_ids}}).to_list()
        # A device stored before devices were tied to sessions has none to end with.
        tied = {device.session_id for device in devices if device.session_id is not None}
        kept: set[str | None] = {None, *await self._sessions.live(tied)}
        ended = [device.id for device in devices if device.session_id not in kept]
        if ended:
            await PushDeviceDoc.find({"_id": {"$in": ended}}).delete()
            logger.info("removed the push devices of ended sessions", extra={"count": len(ended)})
        return [device for device in devices if device.session_id in kept]

    async def remove(self, device: PushDeviceDoc) -> None:
        await device.delete()
