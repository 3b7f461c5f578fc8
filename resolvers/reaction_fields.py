"""addReaction and removeReaction."""

from __future__ import annotations

import strawberry

from resolvers.access import require_viewer
from schema.context import Info
from schema.types import Message
from services.ids import parse_id


async def add_reaction(info: Info, message_id: strawberry.ID, emoji: str) -> Message:
    viewer = await require_viewer(info)
    services = info.context.services
    message = await services.reactions.add(parse_id(message_id, "messageId"), viewer, emoji)
    return Message.from_doc(message, await info.context.loaders.users.load(message.sender_id))


async def remove_reaction(info: Info, message_id: strawberry.ID, emoji: str) -> Message:
    viewer = await require_viewer(info)
    services = info.context.services
    message = await services.reactions.remove(parse_id(message_id, "messageId"), viewer, emoji)
    return Message.from_doc(message, await info.context.loaders.users.load(message.sender_id))
