"""``plop``: run the server, and use it from a terminal (log in, send, edit, follow a room)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from contextlib import aclosing
from typing import TypeVar

import click

from cli.config import config_dir
from cli.server_commands import SERVER_COMMANDS
from client import (
    DEFAULT_URL,
    SUBPROTOCOLS,
    AuthPayload,
    Credentials,
    Message,
    MessageUpdated,
    PlopClient,
    PlopClientError,
    PlopTransportError,
    Room,
    TypingEvent,
    User,
    delete_credentials,
    load_credentials,
    save_credentials,
    subprotocol_named,
    websocket_url,
)

T = TypeVar("T")


@click.group(
    help="Plop: a real-time messenger backend served as one GraphQL API.",
    commands=SERVER_COMMANDS,
)
@click.version_option(package_name="plop", prog_name="plop")
def main() -> None:
    pass


# --- the client commands ------------------------------------------------------------


def _run(work: Coroutine[object, object, T]) -> T:
    """Runs one command's work; a Plop error becomes a one-line message and exit 1."""
    # The client reports reconnects as warnings; a terminal user wants to see them.
    logging.basicConfig(level=logging.WARNING, format="plop: %(message)s")
    try:
        return asyncio.run(work)
    except PlopTransportError as error:
        # Its message names the URL that was tried ("cannot reach URL: ...").
        raise click.ClickException(error.message) from error
    except PlopClientError as error:
        hint = " (run `plop login USERNAME`)" if error.code == "UNAUTHENTICATED" else ""
        raise click.ClickException(f"{error.code}: {error.message}{hint}") from error


def _session(url: str | None) -> tuple[str, str]:
    """The server URL and token saved by ``plop login``; --url overrides the URL."""
    credentials = load_credentials(config_dir())
    if credentials is None:
        raise click.ClickException("not logged in: run `plop login USERNAME` first")
    return url or credentials.url, credentials.token


def _password(from_stdin: bool, confirm: bool) -> str:
    if not from_stdin:
        return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("--password-stdin: no password on standard input")
    return password


def _save(url: str, auth: AuthPayload) -> None:
    path = save_credentials(
        config_dir(), Credentials(url, auth.token, auth.user.username, auth.user.id)
    )
    click.echo(f"Logged in as {auth.user.username} (user id {auth.user.id}).")
    click.echo(f"Credentials saved to {path}.", err=True)


def one_line(text: str) -> str:
    """Text on one line: backslash, newline, carriage return and tab escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _checked_url(context: click.Context, parameter: click.Parameter, url: str | None) -> str | None:
    if url is not None:
        try:
            websocket_url(url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), context, parameter) from exc
    return url


URL_OPTION = click.option(
    "--url",
    default=None,
    metavar="URL",
    callback=_checked_url,
    help="The server's GraphQL URL [default: the one you logged in to].",
)
LOGIN_URL_OPTION = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    callback=_checked_url,
    help="The server's GraphQL URL.",
)
PASSWORD_STDIN_OPTION = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


@main.command(help="Create an account and log in as it (the password is prompted).")
@click.argument("username")
@LOGIN_URL_OPTION
@click.option("--display-name", default=None, help="Name shown to others [default: USERNAME].")
@PASSWORD_STDIN_OPTION
def signup(username: str, url: str, display_name: str | None, password_stdin: bool) -> None:
    password = _password(password_stdin, confirm=True)

    async def work() -> AuthPayload:
        async with PlopClient(url) as plop:
            return await plop.sign_up(username, password, display_name)

    _save(url, _run(work()))


@main.command(help="Log in; the session is saved for the other commands (mode 0600).")
@click.argument("username")
@LOGIN_URL_OPTION
@PASSWORD_STDIN_OPTION
def login(username: str, url: str, password_stdin: bool) -> None:
    password = _password(password_stdin, confirm=False)

    async def work() -> AuthPayload:
        async with PlopClient(url) as plop:
            return await plop.log_in(username, password)

    _save(url, _run(work()))


@main.command(help="Log out: end the saved session on the server and remove the credentials file.")
def logout() -> None:
    directory = config_dir()
    credentials = load_credentials(directory)
    if credentials is None:
        raise click.ClickException("not logged in")

    async def work() -> None:
        async with PlopClient(credentials.url, credentials.token) as plop:
            try:
                await plop.log_out()
            except PlopClientError as error:
                if error.code != "UNAUTHENTICATED":
                    raise
                # The session had ended already (expired, or logged out elsewhere).

    _run(work())  # a server that cannot be reached keeps the file, to try again
    delete_credentials(directory)
    click.echo(f"Logged out {credentials.username} from {credentials.url}.")


@main.command(help="Print who you are logged in as: USERNAME<TAB>USER_ID<TAB>URL.")
@URL_OPTION
def whoami(url: str | None) -> None:
    server, token = _session(url)

    async def work() -> User:
        async with PlopClient(server, token) as plop:
            return await plop.me()

    me = _run(work())
    click.echo(f"{me.username}\t{me.id}\t{server}")


@main.command(
    short_help="Find users by the start of their name; print their ids.",
    help=(
        "Find users whose username or display name starts with QUERY (any case): "
        "USER_ID<TAB>USERNAME<TAB>DISPLAY_NAME, one a line; `plop direct USER_ID` "
        "then opens a room with one."
    ),
)
@click.argument("query")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="At most this many."
)
@URL_OPTION
def search(query: str, limit: int, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> list[User]:
        async with PlopClient(server, token) as plop:
            return await plop.search_users(query, limit)

    found = _run(work())
    if not found:
        click.echo(f"no users match {query!r}", err=True)
    for user in found:
        click.echo("\t".join((user.id, user.username, one_line(user.display_name))))


@main.command(help="Send TEXT to ROOM (a room id) and print the stored message's seq.")
@click.argument("room")
@click.argument("text")
@click.option(
    "--client-id",
    default=None,
    help="Idempotency key: sending again with the same one returns the first message.",
)
@click.option(
    "--show-id",
    is_flag=True,
    help="Print SEQ<TAB>MESSAGE_ID (the id `plop edit` and `plop delete` take).",
)
@URL_OPTION
def send(room: str, text: str, client_id: str | None, show_id: bool, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> Message:
        async with PlopClient(server, token) as plop:
            return await plop.send_message(room, text, client_id)

    sent = _run(work())
    click.echo(f"{sent.seq}\t{sent.id}" if show_id else sent.seq)


@main.command(help="Replace the text of your message MESSAGE_ID; print its seq.")
@click.argument("message_id")
@click.argument("text")
@URL_OPTION
def edit(message_id: str, text: str, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> int:
        async with PlopClient(server, token) as plop:
            return (await plop.edit_message(message_id, text)).seq

    click.echo(_run(work()))


@main.command(help="Delete your message MESSAGE_ID (its seq stays, its text goes); print its seq.")
@click.argument("message_id")
@URL_OPTION
def delete(message_id: str, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> int:
        async with PlopClient(server, token) as plop:
            return (await plop.delete_message(message_id)).seq

    click.echo(_run(work()))


def message_line(message: Message) -> str:
    """SEQ<TAB>USERNAME<TAB>TEXT, with " (edited)" after an edited text; "(deleted)"."""
    if message.deleted:
        text = "(deleted)"
    else:
        text = one_line(message.text) + (" (edited)" if message.edited_at else "")
    return f"{message.seq}\t{message.sender.username}\t{text}"


@main.command(
    short_help="Print ROOM's messages as they arrive, across restarts.",
    help=(
        "Print ROOM's messages as they arrive, one line each: SEQ<TAB>USERNAME<TAB>TEXT "
        "(newlines and tabs in TEXT escaped as \\n and \\t; an edited text ends with "
        '" (edited)", a deleted one reads "(deleted)"). Edits and deletes print the '
        'message\'s line again, and "USERNAME is typing…" when someone starts typing. '
        "Keeps going across dropped connections and server restarts without gaps or "
        "repeats (edits and typing made while it reconnects are not replayed)."
    ),
)
@click.argument("room")
@click.option(
    "--after-seq",
    type=click.IntRange(min=0),
    default=None,
    help="Print the stored messages after this seq first [default: only new ones].",
)
@click.option(
    "--subprotocol",
    type=click.Choice(SUBPROTOCOLS),
    default=SUBPROTOCOLS[0],
    show_default=True,
    help="WebSocket subprotocol.",
)
@URL_OPTION
def tail(room: str, after_seq: int | None, subprotocol: str, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> None:
        async with PlopClient(server, token, subprotocol_named(subprotocol)) as plop:
            start = after_seq if after_seq is not None else await plop.last_seq(room)
            click.echo(f"Following room {room} after seq {start}.", err=True)
            await _follow(plop, room, start)

    _run(work())


async def _follow(plop: PlopClient, room: str, start: int) -> None:
    """Prints the room's messages and activity until either stream ends or fails."""

    async def messages() -> None:
        async with aclosing(plop.messages(room, after_seq=start)) as live:
            async for message in live:
                click.echo(message_line(message))

    async def activity() -> None:
        async with aclosing(plop.activity(room)) as live:
            async for event in live:
                if isinstance(event, MessageUpdated):
                    click.echo(message_line(event.message))
                elif isinstance(event, TypingEvent) and event.typing:
                    click.echo(f"{event.user.username} is typing…")

    tasks = [asyncio.create_task(messages()), asyncio.create_task(activity())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()  # the error that ended it, if any


def _room_line(room: Room, viewer_id: str) -> str:
    others = [member.username for member in room.members if member.id != viewer_id]
    name = room.title if room.title is not None else ",".join(others)
    return "\t".join(
        (room.id, room.kind.value, one_line(name), str(room.last_seq), str(room.unread_count))
    )


@main.command(
    short_help="List your rooms, most recent first.",
    help="List your rooms, most recent first: ID<TAB>KIND<TAB>NAME<TAB>LAST_SEQ<TAB>UNREAD.",
)
@URL_OPTION
def rooms(url: str | None) -> None:
    server, token = _session(url)

    async def work() -> list[str]:
        async with PlopClient(server, token) as plop:
            me = await plop.me()
            # The client's pages (20 rooms, each with its members) stay under the
            # server's query cost limit; 100 rooms a page would not.
            return [_room_line(room, me.id) async for room in plop.rooms()]

    lines = _run(work())
    if not lines:
        click.echo("no rooms yet", err=True)  # on stderr: the listing itself stays empty
    for line in lines:
        click.echo(line)


@main.command(
    short_help="Open the 1:1 room with USER_ID; print its id.",
    help="Open the 1:1 room with USER_ID (the existing one if there is one); print its id.",
)
@click.argument("user_id")
@URL_OPTION
def direct(user_id: str, url: str | None) -> None:
    server, token = _session(url)

    async def work() -> str:
        async with PlopClient(server, token) as plop:
            return (await plop.create_direct_room(user_id)).id

    click.echo(_run(work()))


@main.command(help="Create a group room TITLE with the given members; print its id.")
@click.argument("title")
@click.argument("member_ids", nargs=-1, metavar="[USER_ID]...")
@URL_OPTION
def group(title: str, member_ids: tuple[str, ...], url: str | None) -> None:
    server, token = _session(url)

    async def work() -> str:
        async with PlopClient(server, token) as plop:
            return (await plop.create_group_room(title, member_ids)).id

    click.echo(_run(work()))
