"""``plop search-messages``: find messages by their words from a terminal."""

from __future__ import annotations

from contextlib import aclosing

import click

from cli.chat_commands import message_line
from cli.chat_session import URL_OPTION, saved_session
from client import Message, PlopClient

# Results asked for per page: the server's largest.
SEARCH_PAGE = 100


@click.command(
    "search-messages",
    short_help="Find messages holding every word of QUERY, newest first.",
    help=(
        "Find messages holding every word of QUERY (any case, any accents; Chinese, "
        "Japanese and Korean text by pairs of characters), newest first, in every room "
        "you are in or in --room ROOM: ROOM_ID<TAB>SEQ<TAB>USERNAME<TAB>TEXT, one a line "
        "(as `plop tail` prints it). `plop search` finds users."
    ),
)
@click.argument("query")
@click.option("--room", default=None, help="Search this room only (a room id).")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000),
    default=20,
    show_default=True,
    help="At most this many.",
)
@URL_OPTION
def search_messages(query: str, room: str | None, limit: int, url: str | None) -> None:
    found = saved_session(url).run(lambda plop: _found(plop, query, room, limit))
    if not found:
        click.echo(f"no messages match {query!r}", err=True)
    for message in found:
        click.echo(f"{message.room_id}\t{message_line(message)}")


async def _found(plop: PlopClient, query: str, room: str | None, limit: int) -> list[Message]:
    found: list[Message] = []
    page_size = min(limit, SEARCH_PAGE)
    async with aclosing(plop.search_messages(query, room, page_size)) as results:
        async for message in results:
            found.append(message)
            if len(found) == limit:
                break
    return found


SEARCH_COMMANDS = (search_messages,)
