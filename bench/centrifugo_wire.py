"""Centrifugo's client JSON protocol, as far as the load generator speaks it.

A client sends commands, one JSON object each: ``{"id": 1, "connect": {"token": ...}}``
then ``{"id": N, "subscribe": {"channel": ...}}``. The server answers each command
with a reply of the same id (``connect``/``subscribe`` result, or ``error``), pushes
publications without an id (``{"push": {"channel": ..., "pub": {"data": ...}}}``),
and pings with an empty object, which the client answers with an empty object. The
server packs up to 16 of these objects into one WebSocket frame, one per line, so a
frame is read line by line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CONNECT_COMMAND_ID = 1
CLIENT_NAME = "plop-bench"
PONG = "{}"


def connect_command(token: str) -> str:
    """The first command of a connection: authenticates with a connection JWT."""
    command = {"id": CONNECT_COMMAND_ID, "connect": {"token": token, "name": CLIENT_NAME}}
    return json.dumps(command, separators=(",", ":"))


def subscribe_command(command_id: int, channel: str) -> str:
    """Subscribes the connection to a channel (no history recovery: the bench has none)."""
    command = {"id": command_id, "subscribe": {"channel": channel}}
    return json.dumps(command, separators=(",", ":"))


@dataclass(frozen=True)
class Publication:
    """One publication pushed to a channel, with the size of its own line."""

    channel: str
    data: dict[str, Any]
    size: int


@dataclass
class Inbound:
    """What one WebSocket frame from the server carried."""

    publications: list[Publication] = field(default_factory=list)
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    pings: int = 0
    problems: list[str] = field(default_factory=list)


def read_frame(raw: str | bytes) -> Inbound:
    """Splits a frame into its objects and sorts them: publications, replies, pings.

    An error reply, a disconnect push or a line that is not a protocol object goes to
    ``problems``, which the load counts as errors.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    inbound = Inbound()
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            inbound.problems.append(f"not JSON: {line[:300]}")
            continue
        if not isinstance(message, dict):
            inbound.problems.append(f"not an object: {line[:300]}")
        elif not message:
            inbound.pings += 1
        elif "push" in message:
            _sort_push(message["push"], line, inbound)
        elif "id" in message:
            if "error" in message:
                inbound.problems.append(f"error reply: {line[:300]}")
            inbound.replies[int(message["id"])] = message
        else:
            inbound.problems.append(f"unexpected: {line[:300]}")
    return inbound


def _sort_push(push: Any, line: str, inbound: Inbound) -> None:
    publication = push.get("pub") if isinstance(push, dict) else None
    if isinstance(publication, dict) and isinstance(publication.get("data"), dict):
        inbound.publications.append(
            Publication(str(push.get("channel", "")), publication["data"], len(line))
        )
    else:
        # A disconnect, an unsubscribe or anything else the bench never asks for.
        inbound.problems.append(f"push: {line[:300]}")
