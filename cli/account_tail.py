"""``plop tail --all``: every event of the account as terminal lines, each starting
with its room's id, followed across reconnects by ``PlopClient.events``."""

from __future__ import annotations

import asyncio
import signal
from contextlib import aclosing

import click

from cli.chat_commands import message_line, one_line
from client import (
    AccountEventPayload,
    MembersChanged,
    MessageAdded,
    MessageUpdated,
    PlopClient,
    PlopSyncTokenExpired,
    ReactionChanged,
    ReadReceipt,
    Room,
    RoomJoined,
    RoomLeft,
    TypingEvent,
)

# How often a Ctrl+C asks the stream to stop again until the command ends.
STOP_AGAIN_SECONDS = 1.0


async def follow_account(plop: PlopClient, since: str | None) -> None:
    """Prints the account's events until the stream fails for good; when stopped
    (Ctrl+C), says which token carries on from the last event printed."""
    me = await plop.me()
    start = "after the given token" if since is not None else "from now"
    click.echo(f"Following every room of {me.username} {start}.", err=True)
    token = since
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupted() -> None:
        # Said at once, from the last line printed, rather than once the stream has
        # unwound: a cancel that lands as an awaited result arrives can be lost in the
        # socket library's waits (Python 3.11's wait_for), so the stop is asked again
        # each second until the command ends.
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and token is not None:
            click.echo(f"To carry on from here: plop tail --all --since {token}", err=True)
        if not main.done():
            main.cancel()
            loop.call_later(STOP_AGAIN_SECONDS, interrupted)

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        async with aclosing(plop.events(since)) as events:
            async for event in events:
                line = event_line(event.payload, me.id)
                if line is not None:
                    click.echo(line)
                token = event.token
    except PlopSyncTokenExpired as expired:
        raise click.ClickException(
            "the server no longer keeps what followed that token: "
            "run `plop tail --all` without --since"
        ) from expired
    except asyncio.CancelledError:
        if interrupts:
            raise KeyboardInterrupt from None  # as Ctrl+C ends any command
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def event_line(payload: AccountEventPayload, viewer_id: str) -> str | None:
    """ROOM_ID<TAB>what happened; None for what a terminal need not show (a typing
    stop)."""
    if isinstance(payload, MessageAdded | MessageUpdated):
        return f"{payload.message.room_id}\t{message_line(payload.message)}"
    if isinstance(payload, TypingEvent):
        return f"{payload.room_id}\t{payload.user.username} is typing…" if payload.typing else None
    if isinstance(payload, ReactionChanged):
        did = "reacted" if payload.added else "took back"
        return (
            f"{payload.message.room_id}\t{payload.user.username} {did} {payload.emoji} "
            f"on {payload.message.seq}"
        )
    if isinstance(payload, ReadReceipt):
        return f"{payload.room_id}\t{payload.user.username} read up to {payload.last_read_seq}"
    if isinstance(payload, MembersChanged):
        members = ", ".join(member.username for member in payload.room.members)
        return f"{payload.room.id}\tmembers: {members}"
    if isinstance(payload, RoomJoined):
        return f"{payload.room.id}\tjoined {room_name(payload.room, viewer_id)}"
    if isinstance(payload, RoomLeft):
        return f"{payload.room_id}\tleft"
    invitation = payload.invitation  # RoomInvited: the last kind
    return (
        f"{invitation.room.id}\tinvited by {invitation.inviter.username} to "
        f"{room_name(invitation.room, viewer_id)} (invitation {invitation.id})"
    )


def room_name(room: Room, viewer_id: str) -> str:
    """A group's title; a direct room is named by its other member."""
    if room.title is not None:
        return one_line(room.title)
    return ",".join(member.username for member in room.members if member.id != viewer_id)
