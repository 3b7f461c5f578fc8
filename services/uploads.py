"""Uploads: files sent straight to object storage, attached to messages or shown as
profile pictures.

``create`` reserves an upload (limits, size, type, quota) and signs a short-lived
ticket: the client sends the bytes to storage itself. Before a message may name an
upload (``claim``) or a profile may show it (``make_avatar``), storage is asked what
arrived (HEAD): exactly the announced size and type, the sender's own, made for this
room, and not used elsewhere; an image's width and height are read from its first
bytes. Download URLs are signed per read and short-lived; the resolvers hand them
only to who may see the message or user.

Every way an upload stops being needed (its message deleted, its owner's account
deleted, a newer profile picture, never used within ``orphan_seconds``) goes through
``_discard``: the document is marked DISCARDED first, then the object is deleted and
the document with it; whatever failed is finished by the clean-up pass.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from beanie import PydanticObjectId
from PIL import Image, UnidentifiedImageError

from backends.mongo import aggregate_rows
from backends.object_storage import ObjectStorage, UploadGrant
from errors import BadUserInput, NotFound
from models import MessageDoc, RoomDoc, UploadDoc, UserDoc
from models.time import utc_now
from models.upload import UploadState
from services.locks import Locks
from services.rate_limits import LimitName, RateLimiter

logger = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 255
MAX_ATTACHMENTS_PER_MESSAGE = 10
# The first bytes read of an image for its size: every common format states its
# dimensions in its header, well within this.
IMAGE_HEADER_BYTES = 64 * 1024
# Uploads the clean-up deletes per query.
CLEANUP_BATCH = 100
# Pillow refuses to decode past this many pixels; the header alone is read here, but
# a size above it is no photo anyone sends.
MAX_IMAGE_PIXELS = 200_000_000


# The states of an upload a message holds (or is being stored with).
_TAKEN = (UploadState.ATTACHING, UploadState.ATTACHED)


@dataclass(frozen=True, slots=True)
class UploadRules:
    """The operator's limits (settings.py, README "Limits")."""

    max_bytes: int
    quota_bytes: int
    content_types: frozenset[str]
    ticket_seconds: float
    download_seconds: float
    orphan_seconds: float
    cleanup_interval_seconds: float


def _is_image(content_type: str) -> bool:
    return content_type.startswith("image/")


def _image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's first bytes; None if Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(head)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        return None
    return width, height


def _checked_filename(filename: str) -> str:
    name = filename.strip()
    if not name or len(name) > MAX_FILENAME_CHARS:
        raise BadUserInput(f"filename must be 1 to {MAX_FILENAME_CHARS} characters long")
    if any(ch in name for ch in "/\\") or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise BadUserInput("filename may not contain slashes or control characters")
    return name


class UploadService:
    """The rules of uploads; ``storage`` is the backend PLOP_STORAGE_URL chose."""

    def __init__(
        self, storage: ObjectStorage, limits: RateLimiter, locks: Locks, rules: UploadRules
    ) -> None:
        self.storage = storage
        self._limits = limits
        self._locks = locks
        self.rules = rules

    # ------------------------------------------------------------------- create

    async def create(
        self, room: RoomDoc, owner: UserDoc, filename: str, content_type: str, size: int
    ) -> tuple[UploadDoc, UploadGrant]:
        """Reserves an upload into the room and signs its ticket. The caller checked
        that the owner is a member."""
        assert room.id is not None and owner.id is not None
        name = _checked_filename(filename)
        kind = content_type.strip().lower()
        if kind not in self.rules.content_types:
            raise BadUserInput(
                f"files of type {content_type[:100]!r} are not taken; allowed: "
                + ", ".join(sorted(self.rules.content_types))
            )
        if not 1 <= size <= self.rules.max_bytes:
            raise BadUserInput(f"size must be 1 to {self.rules.max_bytes} bytes")
        await self._limits.hit(LimitName.CREATE_UPLOAD, str(owner.id))
        if await self.stored_bytes(owner.id) + size > self.rules.quota_bytes:
            raise BadUserInput(
                f"this upload would pass your storage quota of {self.rules.quota_bytes} bytes; "
                "delete messages with files to make room"
            )
        upload_id = PydanticObjectId()
        upload = UploadDoc(
            id=upload_id,
            owner_id=owner.id,
            room_id=room.id,
            key=f"uploads/{upload_id}",
            filename=name,
            content_type=kind,
            size=size,
        )
        await upload.insert()
        grant = await self.storage.grant_upload(upload.key, kind, size, self.rules.ticket_seconds)
        return upload, grant

    async def stored_bytes(self, owner_id: PydanticObjectId) -> int:
        """The bytes the owner's uploads hold or reserve (discarded ones do not count)."""
        rows = await aggregate_rows(
            UploadDoc,
            [
                {"$match": {"owner_id": owner_id, "state": {"$ne": UploadState.DISCARDED.value}}},
                {"$group": {"_id": "$owner_id", "total": {"$sum": "$size"}}},
            ],
        )
        return int(rows[0]["total"]) if rows else 0

    # ----------------------------------------------------------------- checking

    async def _own_pending(self, upload_id: PydanticObjectId, owner: UserDoc) -> UploadDoc:
        upload = await UploadDoc.get(upload_id)
        # Another user's upload reads as missing: an id reveals nothing.
        if upload is None or upload.owner_id != owner.id:
            raise NotFound(f"no such upload: {upload_id}")
        return upload

    async def _check_stored(self, upload: UploadDoc) -> UploadDoc:
        """Asks storage what arrived: BAD_USER_INPUT unless it is exactly what was
        announced; reads an image's size."""
        found = await self.storage.head(upload.key)
        if found is None:
            raise BadUserInput(f"upload {upload.id} has not reached storage yet")
        if found.size != upload.size or found.content_type.lower() != upload.content_type:
            raise BadUserInput(
                f"upload {upload.id} is not what createUpload announced "
                f"({upload.size} bytes of {upload.content_type})"
            )
        if _is_image(upload.content_type):
            head = await self.storage.read_start(upload.key, IMAGE_HEADER_BYTES)
            dimensions = await asyncio.to_thread(_image_size, head)
            if dimensions is None:
                raise BadUserInput(f"upload {upload.id} is not a readable image")
            upload.width, upload.height = dimensions
        return upload

    # --------------------------------------------------------------- attaching

    async def claim(
        self,
        upload_ids: Sequence[PydanticObjectId],
        sender: UserDoc,
        room_id: PydanticObjectId,
        message_id: PydanticObjectId,
        message_key: str,
    ) -> list[PydanticObjectId]:
        """Attaches the uploads to the message about to be stored; returns the ids it
        attached now (a retry of the same send finds them attached to its first copy,
        and attaches nothing). Each upload is checked and attached under its lock, so
        two sends naming the same upload cannot both have it."""
        if len(upload_ids) > MAX_ATTACHMENTS_PER_MESSAGE:
            raise BadUserInput(f"a message takes at most {MAX_ATTACHMENTS_PER_MESSAGE} files")
        if len(set(upload_ids)) != len(upload_ids):
            raise BadUserInput("attachmentIds names the same upload twice")
        checked: list[UploadDoc] = []
        for upload_id in upload_ids:
            upload = await self._own_pending(upload_id, sender)
            if upload.room_id != room_id:
                raise BadUserInput(f"upload {upload_id} was made for another room")
            if upload.state in _TAKEN and upload.message_key == message_key:
                continue  # attached by an earlier try of this same send
            if upload.state is not UploadState.PENDING:
                raise BadUserInput(f"upload {upload_id} is already used")
            checked.append(await self._check_stored(upload))
        attached: list[PydanticObjectId] = []
        try:
            for upload in checked:
                assert upload.id is not None
                async with self._locks.hold(f"upload:{upload.id}"):
                    current = await UploadDoc.get(upload.id)
                    if current is None or current.state is not UploadState.PENDING:
                        raise BadUserInput(f"upload {upload.id} is already used")
                    await UploadDoc.find_one({"_id": upload.id}).update(
                        {
                            "$set": {
                                "state": UploadState.ATTACHING.value,
                                "message_id": message_id,
                                "message_key": message_key,
                                "width": upload.width,
                                "height": upload.height,
                                "changed_at": utc_now(),
                            }
                        }
                    )
                attached.append(upload.id)
        except BaseException:
            await self.release(attached)
            raise
        return attached

    async def confirm(
        self, upload_ids: Sequence[PydanticObjectId], message_id: PydanticObjectId
    ) -> None:
        """The message the uploads were claimed for is stored (as ``message_id``: a
        concurrent send of the same clientId may have stored its own copy instead):
        they are attached to it."""
        if upload_ids:
            await UploadDoc.find(
                {"_id": {"$in": list(upload_ids)}, "state": UploadState.ATTACHING.value}
            ).update_many({"$set": {"state": UploadState.ATTACHED.value, "message_id": message_id}})

    async def release(self, upload_ids: Sequence[PydanticObjectId]) -> None:
        """Gives back uploads a send claimed but did not store a message with."""
        for upload_id in upload_ids:
            async with self._locks.hold(f"upload:{upload_id}"):
                await UploadDoc.find_one(
                    {"_id": upload_id, "state": UploadState.ATTACHING.value}
                ).update(
                    {
                        "$set": {
                            "state": UploadState.PENDING.value,
                            "message_id": None,
                            "message_key": None,
                        }
                    }
                )

    async def of_messages(
        self, message_ids: Sequence[PydanticObjectId]
    ) -> dict[PydanticObjectId, list[UploadDoc]]:
        """Each message's attachments, oldest upload first, in one query."""
        found = (
            await UploadDoc.find(
                {
                    "message_id": {"$in": list(set(message_ids))},
                    "state": {"$in": [state.value for state in _TAKEN]},
                }
            ).to_list()
            if message_ids
            else []
        )
        by_message: dict[PydanticObjectId, list[UploadDoc]] = defaultdict(list)
        for upload in sorted(found, key=lambda upload: str(upload.id)):
            assert upload.message_id is not None
            by_message[upload.message_id].append(upload)
        return by_message

    async def of_ids(
        self, upload_ids: Sequence[PydanticObjectId]
    ) -> dict[PydanticObjectId, UploadDoc]:
        if not upload_ids:
            return {}
        found = await UploadDoc.find({"_id": {"$in": list(set(upload_ids))}}).to_list()
        return {upload.id: upload for upload in found if upload.id is not None}

    async def download_url(self, upload: UploadDoc) -> str:
        """A signed, short-lived GET of the upload's object."""
        return await self.storage.download_url(upload.key, self.rules.download_seconds)

    # ------------------------------------------------------------------ avatars

    async def make_avatar(self, owner: UserDoc, upload_id: PydanticObjectId) -> UploadDoc:
        """Checks the owner's image upload and marks it their profile picture; the
        caller stores it on the account, then discards the picture it replaced."""
        upload = await self._own_pending(upload_id, owner)
        if upload.state is UploadState.AVATAR and owner.avatar_upload_id == upload.id:
            return upload
        if upload.state is not UploadState.PENDING:
            raise BadUserInput(f"upload {upload_id} is already used")
        if not _is_image(upload.content_type):
            raise BadUserInput("a profile picture must be an image")
        await self._check_stored(upload)
        async with self._locks.hold(f"upload:{upload.id}"):
            current = await UploadDoc.get(upload_id)
            if current is None or current.state is not UploadState.PENDING:
                raise BadUserInput(f"upload {upload_id} is already used")
            await UploadDoc.find_one({"_id": upload_id}).update(
                {
                    "$set": {
                        "state": UploadState.AVATAR.value,
                        "width": upload.width,
                        "height": upload.height,
                        "changed_at": utc_now(),
                    }
                }
            )
        upload.state = UploadState.AVATAR
        return upload

    # --------------------------------------------------------------- discarding

    async def discard_of_messages(self, message_ids: Sequence[PydanticObjectId]) -> None:
        """The attachments of deleted messages: gone from storage."""
        if message_ids:
            await self._discard({"message_id": {"$in": list(message_ids)}})

    async def discard_of_owner(self, owner_id: PydanticObjectId) -> None:
        """Every upload of a deleted account: gone from storage."""
        await self._discard({"owner_id": owner_id})

    async def discard(self, upload_id: PydanticObjectId) -> None:
        await self._discard({"_id": upload_id})

    async def _discard(self, query: dict[str, object]) -> None:
        query = {**query, "state": {"$ne": UploadState.DISCARDED.value}}
        await UploadDoc.find(query).update_many(
            {"$set": {"state": UploadState.DISCARDED.value, "changed_at": utc_now()}}
        )
        await self._delete_discarded({k: v for k, v in query.items() if k != "state"})

    async def _delete_discarded(self, query: dict[str, object]) -> int:
        """Deletes the objects of discarded uploads, then their documents; one whose
        object could not be deleted now stays for the next pass."""
        deleted = 0
        batch = (
            await UploadDoc.find({**query, "state": UploadState.DISCARDED.value})
            .limit(CLEANUP_BATCH)
            .to_list()
        )
        for upload in batch:
            try:
                await self.storage.delete(upload.key)
            except Exception:
                logger.warning("upload object not deleted yet", extra={"upload": str(upload.id)})
                continue
            await upload.delete()
            deleted += 1
        return deleted

    async def clean_once(self) -> int:
        """One pass: uploads never used within the orphan time are discarded, and the
        objects of discarded uploads deleted. Returns how many uploads went."""
        cutoff = utc_now() - timedelta(seconds=self.rules.orphan_seconds)
        await self._settle_claims(cutoff)
        await UploadDoc.find(
            {"state": UploadState.PENDING.value, "changed_at": {"$lt": cutoff}}
        ).update_many({"$set": {"state": UploadState.DISCARDED.value, "changed_at": utc_now()}})
        gone = 0
        while (deleted := await self._delete_discarded({})) > 0:
            gone += deleted
        return gone

    async def _settle_claims(self, cutoff: datetime) -> None:
        """Claims a send left (its instance died between claim and confirm): attached
        if its message was stored, else discarded."""
        stale = (
            await UploadDoc.find(
                {"state": UploadState.ATTACHING.value, "changed_at": {"$lt": cutoff}}
            )
            .limit(CLEANUP_BATCH)
            .to_list()
        )
        if not stale:
            return
        stored = {
            message.id
            for message in await MessageDoc.find(
                {"_id": {"$in": [upload.message_id for upload in stale]}}
            ).to_list()
        }
        for upload in stale:
            assert upload.id is not None
            if upload.message_id in stored:
                assert upload.message_id is not None
                await self.confirm([upload.id], upload.message_id)
            else:
                await self.discard(upload.id)

    async def clean(self) -> int:
        """One clean-up pass (due every ``rules.cleanup_interval_seconds``), logged."""
        gone = await self.clean_once()
        if gone:
            logger.info("unused uploads deleted", extra={"uploads": gone})
        return gone
