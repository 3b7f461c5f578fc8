"""``plop reply`` and ``plop react``: answer a message, put an emoji on one."""

from __future__ import annotations

import click

from cli.chat_session import URL_OPTION, saved_session
from client import Message


def reactions_line(message: Message) -> str:
    """EMOJI COUNT pairs, most used first ("-" for none); a "*" marks your own."""
    groups = [
        f"{group.emoji}{'*' if group.reacted_by_viewer else ''} {group.count}"
        for group in message.reactions
    ]
    return "\t".join(groups) or "-"


@click.command(
    help=(
        "Send TEXT to ROOM as a reply to MESSAGE_ID (a message of that room); print the "
        "stored message's SEQ<TAB>MESSAGE_ID."
    )
)
@click.argument("room")
@click.argument("message_id")
@click.argument("text")
@URL_OPTION
def reply(room: str, message_id: str, text: str, url: str | None) -> None:
    sent = saved_session(url).run(
        lambda plop: plop.send_message(room, text, reply_to_id=message_id)
    )
    click.echo(f"{sent.seq}\t{sent.id}")


@click.command(
    help=(
        "Put EMOJI (exactly one) on MESSAGE_ID, or take yours off with --remove; print the "
        'message\'s reactions as EMOJI COUNT, tab-separated, yours marked "*".'
    )
)
@click.argument("message_id")
@click.argument("emoji")
@click.option("--remove", is_flag=True, help="Take your EMOJI off instead.")
@URL_OPTION
def react(message_id: str, emoji: str, remove: bool, url: str | None) -> None:
    message = saved_session(url).run(
        lambda plop: (
            plop.remove_reaction(message_id, emoji)
            if remove
            else plop.add_reaction(message_id, emoji)
        )
    )
    click.echo(reactions_line(message))


RICH_MESSAGE_COMMANDS = (reply, react)
