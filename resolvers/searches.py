"""searchMessages: the viewer's messages holding every word of a query."""

from __future__ import annotations

import strawberry

from resolvers.access import require_member, require_viewer
from schema.context import Info
from schema.types import Message, MessageConnection, MessageEdge, PageInfo
from services.message_search import search_cursor


async def search_messages(
    info: Info,
    query: str,
    room_id: strawberry.ID | None = None,
    first: int | None = 20,
    after: str | None = None,
) -> MessageConnection:
    if room_id is None:
        viewer, room = await require_viewer(info), None
    else:
        viewer, room = await require_member(info, room_id)
    services = info.context.services
    page = await services.search.search(viewer, query, room, first, after)
    senders = await services.accounts.get_many([message.sender_id for message in page.items])
    edges = [
        MessageEdge(
            cursor=search_cursor(message),
            node=Message.from_doc(message, senders.get(message.sender_id)),
        )
        for message in page.items
    ]
    return MessageConnection(edges=edges, page_info=PageInfo.of(page, [e.cursor for e in edges]))
