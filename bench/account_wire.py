"""The load's side of ``events(since)``: the subscribe frame and reading its frames.

One ``events`` subscription carries every room of its viewer's account, each message
with a token; the load keeps the books of each room of the socket apart, as it does
for one ``messageAdded`` subscription per room. The message fields asked for are
``MESSAGE_ADDED``'s, so that both layouts' frames differ only by the event wrapping
and its token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ACCOUNT_EVENTS = (
    "subscription BenchAccount($since: String) { events(since: $since) { token payload { "
    "__typename ... on MessageAdded { message "
    "{ id roomId seq text clientId createdAt sender { id username } } } } } }"
)
# The one operation an account socket runs.
ACCOUNT_OPERATION = "1"


@dataclass(frozen=True, slots=True)
class AccountMessage:
    room: str
    seq: int
    text: str


def subscribe_frame(since: str | None = None) -> str:
    """graphql-transport-ws ``subscribe`` of the account's events after ``since``
    (None: from now on)."""
    return json.dumps(
        {
            "id": ACCOUNT_OPERATION,
            "type": "subscribe",
            "payload": {"query": ACCOUNT_EVENTS, "variables": {"since": since}},
        }
    )


def read_event(data: dict[str, Any]) -> AccountMessage | str:
    """A ``next`` payload's data: the message it carries, or the name of the other
    event it is (a room joined, an edit: none is sent during a run)."""
    event = data.get("events")
    if not isinstance(event, dict) or not isinstance(event.get("payload"), dict):
        return f"not an account event: {json.dumps(data)[:300]}"
    payload = event["payload"]
    kind = str(payload.get("__typename"))
    message = payload.get("message")
    if kind != "MessageAdded" or not isinstance(message, dict):
        return kind
    if not event.get("token"):
        return "MessageAdded without a token"
    return AccountMessage(str(message["roomId"]), int(message["seq"]), str(message["text"]))
