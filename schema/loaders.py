"""DataLoaders: the per-field lookups of a page, one round trip per kind.

A page of rooms asks each room for its members and their presence, its newest seq,
last message and the viewer's read marker and unread count. Each field loads
through these loaders, which gather what one step of execution asks for and fetch
it with one query (or one Redis pipeline): the round trips of a page do not grow
with the number of rooms in it.

They batch and do not cache. A context lives for a request or a socket's whole
life, and what these fields show changes while it does (a mutation moves a read
marker, a message arrives between two events of a subscription), so every load
fetches afresh, together with the loads made alongside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from beanie import PydanticObjectId
from strawberry.dataloader import DataLoader

from models import MessageDoc, ReactionDoc, UploadDoc, UserDoc
from services import Services
from services.mentions import mention_counts
from services.presence import Presence
from services.reactions import reactions_of
from services.replies import messages_by_id
from services.sequence import latest_seqs, messages_at

RoomKey = tuple[PydanticObjectId, PydanticObjectId]  # (room, viewer)
MessageKey = tuple[PydanticObjectId, PydanticObjectId]  # (room, message)
T = TypeVar("T")


async def _per_viewer(
    keys: Sequence[RoomKey],
    fetch: Callable[
        [PydanticObjectId, list[PydanticObjectId]], Awaitable[dict[PydanticObjectId, T]]
    ],
) -> list[T]:
    """Each (room, viewer)'s value, fetched with one call per viewer."""
    by_viewer: dict[PydanticObjectId, list[PydanticObjectId]] = defaultdict(list)
    for room_id, viewer_id in keys:
        by_viewer[viewer_id].append(room_id)
    found = {
        viewer_id: await fetch(viewer_id, room_ids) for viewer_id, room_ids in by_viewer.items()
    }
    return [found[viewer_id][room_id] for room_id, viewer_id in keys]


class Loaders:
    """One set per context (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.users = DataLoader[PydanticObjectId, UserDoc | None](self._users, cache=False)
        # (viewer, user) -> the user's presence, if the viewer may see it.
        self.presence = DataLoader[RoomKey, Presence | None](self._presence, cache=False)
        # (room, seq hint) -> the room's newest seq.
        self.latest_seqs = DataLoader[tuple[PydanticObjectId, int], int](
            self._latest_seqs, cache=False
        )
        # (room, seq) -> the message there.
        self.messages_at = DataLoader[tuple[PydanticObjectId, int], MessageDoc | None](
            self._messages_at, cache=False
        )
        # (room, viewer) -> the viewer's read marker.
        self.read_markers = DataLoader[RoomKey, int](self._read_markers, cache=False)
        # (room, viewer) -> when the viewer's mute of the room ends (None: not muted).
        self.mutes = DataLoader[RoomKey, datetime | None](self._mutes, cache=False)
        # (room, message) -> the message (the originals of a page's replies).
        self.messages = DataLoader[MessageKey, MessageDoc | None](self._messages, cache=False)
        # message -> its reactions, oldest first.
        self.reactions = DataLoader[PydanticObjectId, list[ReactionDoc]](
            self._reactions, cache=False
        )
        # (room, viewer, read marker) -> messages after the marker mentioning the viewer.
        self.mention_counts = DataLoader[tuple[PydanticObjectId, PydanticObjectId, int], int](
            self._mention_counts, cache=False
        )
        # (room, viewer, read marker) -> messages after the marker not sent by the viewer.
        self.unread_counts = DataLoader[tuple[PydanticObjectId, PydanticObjectId, int], int](
            self._unread_counts, cache=False
        )
        # message -> its attached uploads; upload id -> the upload (profile pictures).
        self.attachments = DataLoader[PydanticObjectId, list[UploadDoc]](
            self._attachments, cache=False
        )
        self.uploads = DataLoader[PydanticObjectId, UploadDoc | None](self._uploads, cache=False)

    async def _attachments(self, keys: Sequence[PydanticObjectId]) -> list[list[UploadDoc]]:
        found = await self._services.uploads.of_messages(list(keys))
        return [found.get(key, []) for key in keys]

    async def _uploads(self, keys: Sequence[PydanticObjectId]) -> list[UploadDoc | None]:
        found = await self._services.uploads.of_ids(list(keys))
        return [found.get(key) for key in keys]

    async def _users(self, keys: Sequence[PydanticObjectId]) -> list[UserDoc | None]:
        found = await self._services.accounts.get_many(list(keys))
        return [found.get(key) for key in keys]

    async def _presence(self, keys: Sequence[RoomKey]) -> list[Presence | None]:
        by_viewer: dict[PydanticObjectId, set[PydanticObjectId]] = defaultdict(set)
        for viewer_id, user_id in keys:
            by_viewer[viewer_id].add(user_id)
        services = self._services
        seen = {
            viewer_id: await services.presence.visible_many(viewer_id, users)
            for viewer_id, users in by_viewer.items()
        }
        return [seen[viewer_id].get(user_id) for viewer_id, user_id in keys]

    async def _latest_seqs(self, keys: Sequence[tuple[PydanticObjectId, int]]) -> list[int]:
        hints: dict[PydanticObjectId, int] = {}
        for room_id, hint in keys:
            hints[room_id] = max(hints.get(room_id, 0), hint)
        newest = await latest_seqs(hints)
        return [newest[room_id] for room_id, _ in keys]

    async def _messages_at(
        self, keys: Sequence[tuple[PydanticObjectId, int]]
    ) -> list[MessageDoc | None]:
        found = await messages_at(keys)
        return [found.get(key) for key in keys]

    async def _read_markers(self, keys: Sequence[RoomKey]) -> list[int]:
        return await _per_viewer(keys, self._services.rooms.read_markers)

    async def _mutes(self, keys: Sequence[RoomKey]) -> list[datetime | None]:
        return await _per_viewer(keys, self._services.mutes.muted_until)

    async def _unread_counts(
        self, keys: Sequence[tuple[PydanticObjectId, PydanticObjectId, int]]
    ) -> list[int]:
        by_viewer: dict[PydanticObjectId, dict[PydanticObjectId, int]] = defaultdict(dict)
        for room_id, viewer_id, marker in keys:
            by_viewer[viewer_id][room_id] = marker
        messages = self._services.messages
        counts = {
            viewer_id: await messages.unread_counts(viewer_id, markers)
            for viewer_id, markers in by_viewer.items()
        }
        return [counts[viewer_id][room_id] for room_id, viewer_id, _ in keys]

    async def _messages(self, keys: Sequence[MessageKey]) -> list[MessageDoc | None]:
        found = await messages_by_id(keys)
        return [found.get(message_id) for _, message_id in keys]

    async def _reactions(self, keys: Sequence[PydanticObjectId]) -> list[list[ReactionDoc]]:
        found = await reactions_of(keys)
        return [found[key] for key in keys]

    async def _mention_counts(
        self, keys: Sequence[tuple[PydanticObjectId, PydanticObjectId, int]]
    ) -> list[int]:
        by_viewer: dict[PydanticObjectId, dict[PydanticObjectId, int]] = defaultdict(dict)
        for room_id, viewer_id, marker in keys:
            by_viewer[viewer_id][room_id] = marker
        counts = {
            viewer_id: await mention_counts(viewer_id, markers)
            for viewer_id, markers in by_viewer.items()
        }
        return [counts[viewer_id][room_id] for room_id, viewer_id, _ in keys]
