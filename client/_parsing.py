"""JSON answers to the client's types: the documents in client/operations.py ask for
every field read here, and the server is trusted to answer with the contract's types
(a missing field is a KeyError, a bug in a document)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from client.results import (
    AccountEvent,
    AccountEventPayload,
    Attachment,
    AuthPayload,
    MembersChanged,
    Message,
    MessageAdded,
    MessageUpdated,
    ReactionChanged,
    ReactionGroup,
    ReadReceipt,
    Room,
    RoomActivity,
    RoomInvitation,
    RoomInvited,
    RoomJoined,
    RoomKind,
    RoomLeft,
    RoomMembership,
    RoomRole,
    Session,
    TypingEvent,
    User,
)


def parse_user(data: Mapping[str, Any]) -> User:
    return User(id=data["id"], username=data["username"], display_name=data["displayName"])


def parse_auth(data: Mapping[str, Any]) -> AuthPayload:
    return AuthPayload(token=data["token"], user=parse_user(data["user"]))


def parse_session(data: Mapping[str, Any]) -> Session:
    return Session(
        id=data["id"],
        created_at=datetime.fromisoformat(data["createdAt"]),
        last_seen_at=datetime.fromisoformat(data["lastSeenAt"]),
        current=data["current"],
        user_agent=data["userAgent"],
    )


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def parse_message(data: Mapping[str, Any]) -> Message:
    return Message(
        id=data["id"],
        room_id=data["roomId"],
        seq=data["seq"],
        sender=parse_user(data["sender"]),
        text=data["text"],
        client_id=data["clientId"],
        created_at=datetime.fromisoformat(data["createdAt"]),
        edited_at=_timestamp(data["editedAt"]),
        deleted=data["deleted"],
        reply_to_id=data["replyTo"]["id"] if data["replyTo"] else None,
        reactions=tuple(
            ReactionGroup(group["emoji"], group["count"], group["reactedByViewer"])
            for group in data["reactions"]
        ),
        attachments=tuple(parse_attachment(item) for item in data.get("attachments", ())),
    )


def parse_attachment(data: Mapping[str, Any]) -> Attachment:
    return Attachment(
        id=data["id"],
        filename=data["filename"],
        content_type=data["contentType"],
        size=data["size"],
        url=data["url"],
        width=data["width"],
        height=data["height"],
    )


def parse_room(data: Mapping[str, Any]) -> Room:
    last_message = data["lastMessage"]
    return Room(
        id=data["id"],
        kind=RoomKind(data["kind"]),
        title=data["title"],
        members=tuple(parse_user(member) for member in data["members"]),
        created_at=datetime.fromisoformat(data["createdAt"]),
        last_seq=data["lastSeq"],
        last_message=parse_message(last_message) if last_message else None,
        last_read_seq=data["lastReadSeq"],
        unread_count=data["unreadCount"],
        muted_until=_time(data["mutedUntil"]),
    )


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def parse_invitation(data: Mapping[str, Any]) -> RoomInvitation:
    return RoomInvitation(
        id=data["id"],
        room=parse_room(data["room"]),
        inviter=parse_user(data["inviter"]),
        created_at=datetime.fromisoformat(data["createdAt"]),
    )


def parse_membership(data: Mapping[str, Any]) -> RoomMembership:
    return RoomMembership(
        user=parse_user(data["user"]),
        role=RoomRole(data["role"]),
        joined_at=datetime.fromisoformat(data["joinedAt"]),
    )


def parse_activity(data: Mapping[str, Any]) -> RoomActivity:
    kind = data["__typename"]
    if kind == "TypingEvent":
        return TypingEvent(data["roomId"], parse_user(data["user"]), data["typing"])
    if kind == "ReadReceipt":
        return ReadReceipt(data["roomId"], parse_user(data["user"]), data["lastReadSeq"])
    if kind == "MessageUpdated":
        return MessageUpdated(parse_message(data["message"]))
    if kind == "MembersChanged":
        return MembersChanged(parse_room(data["room"]))
    if kind == "ReactionChanged":
        return ReactionChanged(
            parse_message(data["message"]), parse_user(data["user"]), data["emoji"], data["added"]
        )
    raise ValueError(f"unknown room activity {kind!r}")


def parse_account_event(data: Mapping[str, Any]) -> AccountEvent:
    return AccountEvent(token=data["token"], payload=_account_payload(data["payload"]))


def _account_payload(data: Mapping[str, Any]) -> AccountEventPayload:
    kind = data["__typename"]
    if kind == "MessageAdded":
        return MessageAdded(parse_message(data["message"]))
    if kind == "RoomJoined":
        return RoomJoined(parse_room(data["room"]))
    if kind == "RoomLeft":
        return RoomLeft(data["roomId"])
    if kind == "RoomInvited":
        return RoomInvited(parse_invitation(data["invitation"]))
    return parse_activity(data)
