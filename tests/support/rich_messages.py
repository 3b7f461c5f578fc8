"""GraphQL documents of replies, reactions and mentions, as an app would use them."""

from __future__ import annotations

from typing import Any

from tests.support.chat import MESSAGE_FIELDS, as_user
from tests.support.clients import Account, Subscription
from tests.support.server import ServerProcess

REACTIONS = "reactions { emoji count reactedByViewer users { id } }"
RICH_FIELDS = (
    f"{MESSAGE_FIELDS} replyTo {{ id seq text deleted sender {{ id }} }} "
    f"{REACTIONS} mentions {{ id username }}"
)
SEND_RICH = f"""
mutation($r: ID!, $t: String!, $to: ID) {{
  sendMessage(roomId: $r, text: $t, replyToId: $to) {{ {RICH_FIELDS} }}
}}
"""
ADD_REACTION = f"""
mutation($m: ID!, $e: String!) {{ addReaction(messageId: $m, emoji: $e) {{ id {REACTIONS} }} }}
"""
REMOVE_REACTION = f"""
mutation($m: ID!, $e: String!) {{ removeReaction(messageId: $m, emoji: $e) {{ id {REACTIONS} }} }}
"""
RICH_HISTORY = f"""
query($r: ID!, $last: Int) {{
  messages(roomId: $r, last: $last) {{ edges {{ node {{ {RICH_FIELDS} }} }} }}
}}
"""
REACTION_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) {
    __typename
    ... on ReactionChanged {
      emoji added user { id }
      message { id deleted reactions { emoji count reactedByViewer users { id } } }
    }
    ... on MessageUpdated { message { id deleted reactions { emoji count } } }
  }
}
"""
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { id deleted text } }"
MENTION_COUNT = "query($r: ID!) { room(id: $r) { unreadCount mentionCount } }"


async def send_rich(
    server: ServerProcess, sender: Account, room_id: str, text: str, reply_to: str | None = None
) -> dict[str, Any]:
    sent: dict[str, Any] = (
        await as_user(server, sender, SEND_RICH, r=room_id, t=text, to=reply_to)
    )["sendMessage"]
    return sent


async def rich_history(
    server: ServerProcess, reader: Account, room_id: str
) -> list[dict[str, Any]]:
    page = (await as_user(server, reader, RICH_HISTORY, r=room_id, last=20))["messages"]
    return [edge["node"] for edge in page["edges"]]


def counts(message: dict[str, Any]) -> list[tuple[str, int]]:
    """A message's reaction groups as (emoji, count), in the order served."""
    return [(group["emoji"], group["count"]) for group in message["reactions"]]


async def next_activity(activity: Subscription) -> dict[str, Any]:
    """The next roomActivity event but a MembersChanged: the room's creation is
    published before the test subscribes, and over Kafka it may be consumed after."""
    while True:
        event: dict[str, Any] = (await activity.next())["roomActivity"]
        if event["__typename"] != "MembersChanged":
            return event
