"""sendMessage, editMessage, deleteMessage and the history query."""

from __future__ import annotations

from collections.abc import Callable

import strawberry

from models import MessageDoc
from resolvers.access import require_member, require_viewer
from schema.context import Info
from schema.types import Message, MessageConnection, MessageEdge, PageInfo
from services.ids import parse_id
from services.messages import message_cursor
from services.paging import Page
from services.rate_limits import LimitName


async def send_message(
    info: Info,
    room_id: strawberry.ID,
    text: str,
    client_id: str | None = None,
    reply_to_id: strawberry.ID | None = None,
    attachment_ids: list[strawberry.ID] | None = None,
) -> Message:
    viewer = await require_viewer(info, spending=LimitName.SEND_MESSAGE)
    room = await info.context.services.access.require_sender(parse_id(room_id, "roomId"), viewer)
    reply_to = parse_id(reply_to_id, "replyToId") if reply_to_id is not None else None
    files = [parse_id(value, "attachmentIds") for value in attachment_ids or ()]
    sent = await info.context.services.messages.send(
        room, viewer, text, client_id, reply_to_id=reply_to, attachment_ids=files
    )
    return Message.from_doc(sent, viewer)


async def edit_message(info: Info, message_id: strawberry.ID, text: str) -> Message:
    viewer = await require_viewer(info)
    edited = await info.context.services.messages.edit(
        parse_id(message_id, "messageId"), viewer, text
    )
    return Message.from_doc(edited, viewer)


async def delete_message(info: Info, message_id: strawberry.ID) -> Message:
    viewer = await require_viewer(info)
    deleted = await info.context.services.messages.delete(parse_id(message_id, "messageId"), viewer)
    return Message.from_doc(deleted, viewer)


async def messages(
    info: Info,
    room_id: strawberry.ID,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> MessageConnection:
    _, room = await require_member(info, room_id)
    page = await info.context.services.messages.history(room, first, after, last, before)
    return await message_connection(info, page, message_cursor)


async def message_connection(
    info: Info, page: Page[MessageDoc], cursor_of: Callable[[MessageDoc], str]
) -> MessageConnection:
    """A page of messages as a connection, each with its sender (read in one batch)
    and the cursor ``cursor_of`` gives it (history's seq, search's time)."""
    senders = await info.context.services.accounts.get_many(
        [message.sender_id for message in page.items]
    )
    edges = [
        MessageEdge(
            cursor=cursor_of(message),
            node=Message.from_doc(message, senders.get(message.sender_id)),
        )
        for message in page.items
    ]
    return MessageConnection(edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]))
