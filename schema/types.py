"""The GraphQL object types of the public contract (design/api.graphql)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from beanie import PydanticObjectId

from auth.sessions import SessionRecord
from errors import BadUserInput, NotFound
from live.room_stream import RoomActivity as RoomActivityEvent
from models import MessageDoc, PushDeviceDoc, RoomDoc, UserDoc
from models.friend import FriendRequestStatus
from models.push import PushPlatform
from models.room import RoomKind, RoomRole
from models.time import as_utc
from models.upload import UploadState
from pubsub import MembersChanged as MembersChangedEvent
from pubsub import MessageData, TypingChanged
from pubsub import MessageUpdated as MessageUpdatedEvent
from pubsub import ReactionChanged as ReactionChangedEvent
from pubsub import ReadReceipt as ReadReceiptEvent
from schema.context import Info
from schema.files import Attachment
from services.ids import parse_id
from services.message_data import message_data
from services.paging import Page
from services.presence import Presence as PresenceView
from services.presence import PresenceStatus
from services.reactions import ReactionGroupView, grouped
from services.room_roles import role_of
from services.rooms import membership_cursor

# The enums are the models' and services' own, served under the contract's names.
for _enum in (RoomKind, PresenceStatus, FriendRequestStatus, PushPlatform):
    strawberry.enum(_enum, name=_enum.__name__)
strawberry.enum(
    RoomRole,
    name="RoomRole",
    description=(
        "v1.2. OWNER: one per group, made by createGroupRoom. ADMIN: may rename, remove "
        "MEMBERs. DIRECT rooms: MEMBER."
    ),
)


@strawberry.type
class PushDevice:
    id: strawberry.ID
    platform: PushPlatform
    token: str
    created_at: datetime

    @classmethod
    def from_doc(cls, device: PushDeviceDoc) -> PushDevice:
        return cls(
            id=strawberry.ID(str(device.id)),
            platform=device.platform,
            token=device.token,
            created_at=as_utc(device.created_at),
        )


@strawberry.type
class Presence:
    user_id: strawberry.ID
    status: PresenceStatus
    last_seen_at: datetime | None = strawberry.field(
        description="When the user's last connection closed; null while ONLINE or if never seen."
    )

    @classmethod
    def from_service(cls, presence: PresenceView) -> Presence:
        return cls(
            user_id=strawberry.ID(presence.user_id),
            status=presence.status,
            last_seen_at=presence.last_seen_at,
        )


async def _user_presence(root: User, info: Info) -> Presence | None:
    viewer = info.context.viewer
    if viewer is None:
        return None
    assert viewer.id is not None
    found = await info.context.loaders.presence.load((viewer.id, parse_id(root.id)))
    return Presence.from_service(found) if found else None


async def _user_deleted(root: User, info: Info) -> bool:
    if root.doc is None:  # made from an event's copy of the user: read the account
        root.doc = await info.context.loaders.users.load(parse_id(root.id))
    return root.doc is not None and root.doc.deleted


async def _user_avatar_url(root: User, info: Info) -> str | None:
    # Read afresh: the viewer's own document may be a kept copy from before a change.
    user = await info.context.loaders.users.load(parse_id(root.id))
    if user is None or user.deleted or user.avatar_upload_id is None:
        return None
    upload = await info.context.loaders.uploads.load(user.avatar_upload_id)
    if upload is None or upload.state is not UploadState.AVATAR:
        return None
    return await info.context.services.uploads.download_url(upload)


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    display_name: str
    doc: strawberry.Private[UserDoc | None] = None

    @classmethod
    def from_doc(cls, user: UserDoc) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            username=user.username,
            display_name=user.display_name,
            doc=user,
        )

    presence: Presence | None = strawberry.field(
        resolver=_user_presence,
        description="Visible to the user themself and to their friends; null for everyone else.",
    )
    deleted: bool = strawberry.field(
        resolver=_user_deleted,
        description='True once the account was deleted (displayName then reads "Deleted user").',
    )
    avatar_url: str | None = strawberry.field(
        resolver=_user_avatar_url,
        description="v1.2. A short-lived download URL of the profile picture; null when none.",
    )


@strawberry.type
class Session:
    id: strawberry.ID
    created_at: datetime
    last_seen_at: datetime = strawberry.field(
        description="When it last made a request or held a socket."
    )
    current: bool = strawberry.field(description="The session making this request.")
    user_agent: str | None = strawberry.field(
        description="As the client sent it, at most 200 characters."
    )

    @classmethod
    def from_record(cls, record: SessionRecord, current_id: str) -> Session:
        return cls(
            id=strawberry.ID(record.session_id),
            created_at=record.created_at,
            last_seen_at=record.last_seen_at,
            current=record.session_id == current_id,
            user_agent=record.user_agent,
        )


@strawberry.type
class FriendRequest:
    id: strawberry.ID
    from_: User = strawberry.field(name="from")
    to: User
    status: FriendRequestStatus
    created_at: datetime


@strawberry.type
class AuthPayload:
    token: str = strawberry.field(
        description="Opaque session token, revocable (logOut), with a server-side expiry."
    )
    user: User


async def _group_users(root: ReactionGroup, info: Info, first: int | None = 3) -> list[User]:
    if first is None or first < 0:
        raise BadUserInput("first must be 0 or more")
    users = await info.context.loaders.users.load_many(list(root.user_ids[:first]))
    return [User.from_doc(user) for user in users if user is not None]


@strawberry.type(description="v1.2.")
class ReactionGroup:
    emoji: str
    count: int
    reacted_by_viewer: bool
    user_ids: strawberry.Private[tuple[PydanticObjectId, ...]]

    users: list[User] = strawberry.field(
        resolver=_group_users, description="The first reactors, oldest first."
    )

    @classmethod
    def from_view(cls, view: ReactionGroupView) -> ReactionGroup:
        return cls(
            emoji=view.emoji,
            count=view.count,
            reacted_by_viewer=view.reacted_by_viewer,
            user_ids=view.user_ids,
        )


async def _message_reply_to(root: Message, info: Info) -> Message | None:
    if root.reply_to_id is None:
        return None
    loaders = info.context.loaders
    original = await loaders.messages.load((parse_id(root.room_id), parse_id(root.reply_to_id)))
    if original is None:
        return None
    return Message.from_doc(original, await loaders.users.load(original.sender_id))


async def _message_reactions(root: Message, info: Info) -> list[ReactionGroup]:
    viewer = info.context.viewer
    if root.deleted or viewer is None or viewer.id is None:
        return []
    reactions = await info.context.loaders.reactions.load(parse_id(root.id))
    return [ReactionGroup.from_view(view) for view in grouped(reactions, viewer.id)]


async def _message_mentions(root: Message, info: Info) -> list[User]:
    if root.deleted or not root.mention_ids:
        return []
    users = await info.context.loaders.users.load_many(
        [parse_id(each) for each in root.mention_ids]
    )
    return [User.from_doc(user) for user in users if user is not None]


async def _message_attachments(root: Message, info: Info) -> list[Attachment]:
    # A Message reaches only members of its room (every query, mutation and stream
    # that yields one checked that), so its files' URLs do too.
    if root.deleted:
        return []
    uploads = await info.context.loaders.attachments.load(parse_id(root.id))
    return [await Attachment.of(upload, info) for upload in uploads]


@strawberry.type
class Message:
    id: strawberry.ID
    room_id: strawberry.ID
    seq: int = strawberry.field(
        description="Per room: 1, 2, 3, ... strictly increasing, no gaps, assigned by the server."
    )
    sender: User
    text: str = strawberry.field(description="Empty string once deleted.")
    client_id: str | None = strawberry.field(
        description="The sender's idempotency key, echoed back."
    )
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    reply_to_id: strawberry.Private[str | None] = None
    mention_ids: strawberry.Private[tuple[str, ...]] = ()

    reply_to: Message | None = strawberry.field(
        resolver=_message_reply_to,
        description=(
            "v1.2. The message this one answers; null if none. A deleted original reads "
            'deleted: true, text "".'
        ),
    )
    reactions: list[ReactionGroup] = strawberry.field(
        resolver=_message_reactions,
        description="v1.2. One group per emoji, most used first; empty once deleted.",
    )
    mentions: list[User] = strawberry.field(
        resolver=_message_mentions,
        description="v1.2. Members of the room named as @username in the text.",
    )
    attachments: list[Attachment] = strawberry.field(
        resolver=_message_attachments,
        description="v1.2. Files sent with the message; empty once deleted.",
    )

    @classmethod
    def from_data(cls, data: MessageData) -> Message:
        return cls(
            id=strawberry.ID(data.id),
            room_id=strawberry.ID(data.room_id),
            seq=data.seq,
            sender=User(
                id=strawberry.ID(data.sender_id),
                username=data.sender_username,
                display_name=data.sender_display_name,
            ),
            text=data.text,
            client_id=data.client_id,
            created_at=data.created_at,
            edited_at=data.edited_at,
            deleted=data.deleted,
            reply_to_id=data.reply_to_id,
            mention_ids=data.mention_ids,
        )

    @classmethod
    def from_doc(cls, message: MessageDoc, sender: UserDoc | None) -> Message:
        return cls.from_data(message_data(message, sender))


async def _room_members(root: Room, info: Info, first: int | None = 100) -> list[User]:
    ids = info.context.services.rooms.first_members(root.doc, first)
    users = await info.context.loaders.users.load_many(ids)
    return [User.from_doc(user) for user in users if user is not None]


@strawberry.type(description="v1.2.")
class RoomMembership:
    user: User
    role: RoomRole
    joined_at: datetime


@strawberry.type
class RoomMembershipEdge:
    cursor: str
    node: RoomMembership


@strawberry.type
class RoomMembershipConnection:
    edges: list[RoomMembershipEdge]
    page_info: PageInfo


async def _room_memberships(
    root: Room, info: Info, first: int | None = 100, after: str | None = None
) -> RoomMembershipConnection:
    page = await info.context.services.rooms.memberships(root.doc, first, after)
    users = await info.context.loaders.users.load_many([each.user_id for each in page.items])
    edges = [
        RoomMembershipEdge(
            cursor=membership_cursor(member),
            node=RoomMembership(
                user=User.from_doc(user), role=member.role, joined_at=member.joined_at
            ),
        )
        for member, user in zip(page.items, users, strict=True)
        if user is not None
    ]
    return RoomMembershipConnection(
        edges=edges, page_info=PageInfo.of(page, [edge.cursor for edge in edges])
    )


def _viewer_role(root: Room, info: Info) -> RoomRole:
    viewer = info.context.viewer
    # Every root resolver that returns a Room requires a viewer.
    assert viewer is not None and viewer.id is not None
    return role_of(root.doc, viewer.id)


async def _room_muted_until(root: Room, info: Info) -> datetime | None:
    if root.preview:
        return None
    return await info.context.loaders.mutes.load(root.key(info))


async def _room_mention_count(root: Room, info: Info) -> int:
    if root.preview:
        return 0
    room_id, viewer_id = root.key(info)
    marker = await root._read_marker(info)
    return await info.context.loaders.mention_counts.load((room_id, viewer_id, marker))


@strawberry.type
class Room:
    id: strawberry.ID
    kind: RoomKind
    title: str | None = strawberry.field(description="Group title; null for DIRECT rooms.")
    created_at: datetime
    doc: strawberry.Private[RoomDoc]
    # The room as an invitation shows it to a user who is not in it: its title and
    # members, never its messages (lastSeq 0, no lastMessage, nothing unread).
    preview: strawberry.Private[bool] = False

    @classmethod
    def from_doc(cls, room: RoomDoc, preview: bool = False) -> Room:
        return cls(
            id=strawberry.ID(str(room.id)),
            kind=room.kind,
            title=room.title,
            created_at=as_utc(room.created_at),
            doc=room,
            preview=preview,
        )

    members: list[User] = strawberry.field(
        resolver=_room_members,
        description="The first `first` members (at most 1,000), oldest member first.",
    )
    mention_count: int = strawberry.field(
        resolver=_room_mention_count,
        description="v1.2. Messages after the viewer's read marker that mention the viewer.",
    )
    muted_until: datetime | None = strawberry.field(
        resolver=_room_muted_until,
        description=(
            "v1.2. No push for this room until then (mentions of the viewer still push); "
            "null when not muted. A mute with no end reads 9999-12-31T00:00:00Z."
        ),
    )

    @strawberry.field
    def member_count(self) -> int:
        return len(self.doc.member_ids)

    viewer_role: RoomRole = strawberry.field(
        resolver=_viewer_role, description="v1.2. The viewer's role (MEMBER in DIRECT rooms)."
    )
    memberships: RoomMembershipConnection = strawberry.field(
        resolver=_room_memberships,
        description=("v1.2. Members with their roles, oldest member first (at most 1,000 a page)."),
    )

    @strawberry.field
    async def last_seq(self, info: Info) -> int:
        assert self.doc.id is not None
        if self.preview:
            return 0
        return await info.context.loaders.latest_seqs.load((self.doc.id, self.doc.seq_hint))

    @strawberry.field
    async def last_message(self, info: Info) -> Message | None:
        assert self.doc.id is not None
        if self.preview:
            return None
        loaders = info.context.loaders
        seq = await loaders.latest_seqs.load((self.doc.id, self.doc.seq_hint))
        newest = await loaders.messages_at.load((self.doc.id, seq)) if seq else None
        if newest is None:
            return None
        return Message.from_doc(newest, await loaders.users.load(newest.sender_id))

    @strawberry.field
    async def last_read_seq(self, info: Info) -> int:
        return await self._read_marker(info)

    @strawberry.field
    async def unread_count(self, info: Info) -> int:
        if self.preview:
            return 0
        viewer = info.context.viewer
        assert viewer is not None and viewer.id is not None and self.doc.id is not None
        marker = await self._read_marker(info)
        return await info.context.loaders.unread_counts.load((self.doc.id, viewer.id, marker))

    async def _read_marker(self, info: Info) -> int:
        if self.preview:
            return 0
        return await info.context.loaders.read_markers.load(self.key(info))

    def key(self, info: Info) -> tuple[PydanticObjectId, PydanticObjectId]:
        """(room, viewer): the key of the viewer's own view of the room."""
        viewer = info.context.viewer
        # Every root resolver that returns a Room requires a viewer.
        assert viewer is not None and viewer.id is not None and self.doc.id is not None
        return self.doc.id, viewer.id


@strawberry.type(description="v1.2.")
class RoomInvitation:
    id: strawberry.ID
    room: Room
    inviter: User
    created_at: datetime


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page[Any], cursors: list[str]) -> PageInfo:
        """The page's flags, with the first and last of its edges' cursors."""
        return cls(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


@strawberry.type
class MessageEdge:
    cursor: str
    node: Message


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo


@strawberry.type
class RoomEdge:
    cursor: str
    node: Room


@strawberry.type
class RoomConnection:
    edges: list[RoomEdge]
    page_info: PageInfo


def _event_user(user_id: str, username: str, display_name: str) -> User:
    return User(id=strawberry.ID(user_id), username=username, display_name=display_name)


@strawberry.type
class TypingEvent:
    room_id: strawberry.ID
    user: User
    typing: bool

    @classmethod
    def from_event(cls, event: TypingChanged) -> TypingEvent:
        user = _event_user(event.user_id, event.username, event.display_name)
        return cls(room_id=strawberry.ID(event.room_id), user=user, typing=event.typing)


@strawberry.type
class ReadReceipt:
    room_id: strawberry.ID
    user: User
    last_read_seq: int

    @classmethod
    def from_event(cls, event: ReadReceiptEvent) -> ReadReceipt:
        user = _event_user(event.user_id, event.username, event.display_name)
        return cls(
            room_id=strawberry.ID(event.room_id), user=user, last_read_seq=event.last_read_seq
        )


@strawberry.type
class MessageUpdated:
    message: Message

    @classmethod
    def from_event(cls, event: MessageUpdatedEvent) -> MessageUpdated:
        return cls(message=Message.from_data(event.message))


@strawberry.type(name="MembersChanged")
class MembersChanged:
    room_id: strawberry.Private[str]

    @strawberry.field
    async def room(self, info: Info) -> Room:
        """The room as it is after the change."""
        found = await RoomDoc.get(parse_id(self.room_id))
        assert found is not None  # rooms are never removed
        return Room.from_doc(found)

    @classmethod
    def from_event(cls, event: MembersChangedEvent) -> MembersChanged:
        return cls(room_id=event.room_id)


@strawberry.type(
    description=(
        "v1.2. Someone added or removed a reaction; `message` shows the reactions as they "
        "now stand."
    )
)
class ReactionChanged:
    user: User
    emoji: str
    added: bool
    message_id: strawberry.Private[str]
    room_id: strawberry.Private[str]

    @strawberry.field
    async def message(self, info: Info) -> Message:
        """The message as it stands now, its reactions included."""
        loaders = info.context.loaders
        found = await loaders.messages.load((parse_id(self.room_id), parse_id(self.message_id)))
        if found is None:  # messages are never removed, only emptied
            raise NotFound("no such message")
        return Message.from_doc(found, await loaders.users.load(found.sender_id))

    @classmethod
    def from_event(cls, event: ReactionChangedEvent) -> ReactionChanged:
        return cls(
            user=_event_user(event.user_id, event.username, event.display_name),
            emoji=event.emoji,
            added=event.added,
            message_id=event.message_id,
            room_id=event.room_id,
        )


RoomActivity = Annotated[
    TypingEvent | ReadReceipt | MessageUpdated | MembersChanged | ReactionChanged,
    strawberry.union("RoomActivity"),
]


def activity_of(event: RoomActivityEvent) -> RoomActivity:
    """A room's activity event as the contract's RoomActivity."""
    if isinstance(event, TypingChanged):
        return TypingEvent.from_event(event)
    if isinstance(event, ReadReceiptEvent):
        return ReadReceipt.from_event(event)
    if isinstance(event, MessageUpdatedEvent):
        return MessageUpdated.from_event(event)
    if isinstance(event, ReactionChangedEvent):
        return ReactionChanged.from_event(event)
    return MembersChanged.from_event(event)
