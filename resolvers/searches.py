"""searchMessages: the viewer's messages holding every word of a query."""

from __future__ import annotations

import strawberry

from resolvers.access import require_member, require_viewer
from resolvers.message_fields import message_connection
from schema.context import Info
from schema.types import MessageConnection
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
    page = await info.context.services.search.search(viewer, query, room, first, after)
    return await message_connection(info, page, search_cursor)
