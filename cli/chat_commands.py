"""The chat client's commands: sign up or log in, then search users, open rooms, answer
group invitations, mute rooms, send, edit and delete messages, follow a room from a
terminal, and run a group; list and end sessions, change the password, delete the
account."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from contextlib import aclosing
from datetime import datetime

import click

from cli.chat_session import LOGIN_URL_OPTION, URL_OPTION, ChatSession, saved_session
from cli.config import config_dir
from client import (
    SUBPROTOCOLS,
    AuthPayload,
    Credentials,
    Message,
    MessageUpdated,
    PlopClient,
    PlopClientError,
    Room,
    RoomInvitation,
    RoomMembership,
    RoomRole,
    TypingEvent,
    delete_credentials,
    load_credentials,
    save_credentials,
    subprotocol_named,
)

PASSWORD_STDIN_OPTION = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


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


@click.command(help="Create an account and log in as it (the password is prompted).")
@click.argument("username")
@LOGIN_URL_OPTION
@click.option("--display-name", default=None, help="Name shown to others [default: USERNAME].")
@PASSWORD_STDIN_OPTION
def signup(username: str, url: str, display_name: str | None, password_stdin: bool) -> None:
    password = _password(password_stdin, confirm=True)
    _save(url, ChatSession(url).run(lambda plop: plop.sign_up(username, password, display_name)))


@click.command(help="Log in; the session is saved for the other commands (mode 0600).")
@click.argument("username")
@LOGIN_URL_OPTION
@PASSWORD_STDIN_OPTION
def login(username: str, url: str, password_stdin: bool) -> None:
    password = _password(password_stdin, confirm=False)
    _save(url, ChatSession(url).run(lambda plop: plop.log_in(username, password)))


@click.command(help="Log out: end the saved session on the server and remove the credentials file.")
def logout() -> None:
    directory = config_dir()
    credentials = load_credentials(directory)
    if credentials is None:
        raise click.ClickException("not logged in")
    # A server that cannot be reached keeps the file, to try again.
    ChatSession(credentials.url, credentials.token).run(_end_session)
    delete_credentials(directory)
    click.echo(f"Logged out {credentials.username} from {credentials.url}.")


async def _end_session(plop: PlopClient) -> None:
    """Logs out on the server; a session that had ended already (expired, or logged
    out elsewhere) is ended all the same."""
    try:
        await plop.log_out()
    except PlopClientError as error:
        if error.code != "UNAUTHENTICATED":
            raise


@click.command(
    short_help="List your sessions, newest first.",
    help=(
        "List your sessions (one per login or signup), newest first: "
        "SESSION_ID<TAB>CREATED<TAB>LAST_SEEN<TAB>THIS<TAB>USER_AGENT, where THIS is "
        "`current` for the session this command runs in and `-` for the others; "
        "`plop end-session SESSION_ID` ends one."
    ),
)
@URL_OPTION
def sessions(url: str | None) -> None:
    for session in saved_session(url).run(lambda plop: plop.sessions()):
        click.echo(
            "\t".join(
                (
                    session.id,
                    session.created_at.isoformat(),
                    session.last_seen_at.isoformat(),
                    "current" if session.current else "-",
                    one_line(session.user_agent or "-"),
                )
            )
        )


@click.command(
    "end-session",
    help=(
        "End your session SESSION_ID (from `plop sessions`): its sockets close and its "
        "push devices go. Ending the current one logs this terminal out."
    ),
)
@click.argument("session_id")
@URL_OPTION
def end_session(session_id: str, url: str | None) -> None:
    ended_current = saved_session(url).run(lambda plop: _end_one_session(plop, session_id))
    if ended_current:
        delete_credentials(config_dir())
    click.echo(
        f"Ended session {session_id}" + (" (this one: logged out)." if ended_current else ".")
    )


async def _end_one_session(plop: PlopClient, session_id: str) -> bool:
    """Ends the session; whether it was the one the client runs in."""
    current = [session.id for session in await plop.sessions() if session.current]
    await plop.end_session(session_id)
    return session_id in current


def _stdin_lines(count: int) -> list[str]:
    lines = [sys.stdin.readline().rstrip("\r\n") for _ in range(count)]
    if not all(lines):
        raise click.UsageError(f"--password-stdin: {count} line(s) expected on standard input")
    return lines


@click.command(
    short_help="Change your password; your other sessions end.",
    help=(
        "Change your password (both are prompted, without echo). Every other session "
        "of yours ends; this one stays logged in."
    ),
)
@URL_OPTION
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the current password, then the new one, from two lines of standard input.",
)
def passwd(url: str | None, password_stdin: bool) -> None:
    session = saved_session(url)  # not logged in: said before asking for passwords
    if password_stdin:
        current, new = _stdin_lines(2)
    else:
        current = click.prompt("Current password", hide_input=True)
        new = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    session.run(lambda plop: plop.change_password(current, new))
    click.echo("Password changed; your other sessions have ended.")


@click.command(
    "delete-account",
    short_help="Delete your account for good.",
    help=(
        "Delete your account for good (the password is prompted): every session ends, "
        "friendships, requests and blocks go, you leave every group, the text of your "
        "messages is erased, and your username is never given to anyone again."
    ),
)
@URL_OPTION
@PASSWORD_STDIN_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_account(url: str | None, password_stdin: bool, yes: bool) -> None:
    session = saved_session(url)
    credentials = load_credentials(config_dir())
    assert credentials is not None  # saved_session found them
    if not yes:
        click.confirm(
            f"Delete the account {credentials.username} for good? This cannot be undone",
            abort=True,
        )
    password = _password(password_stdin, confirm=False)
    session.run(lambda plop: plop.delete_account(password))
    delete_credentials(config_dir())
    click.echo(f"Deleted the account {credentials.username}.")


@click.command(help="Print who you are logged in as: USERNAME<TAB>USER_ID<TAB>URL.")
@URL_OPTION
def whoami(url: str | None) -> None:
    session = saved_session(url)
    me = session.run(lambda plop: plop.me())
    click.echo(f"{me.username}\t{me.id}\t{session.url}")


@click.command(
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
    found = saved_session(url).run(lambda plop: plop.search_users(query, limit))
    if not found:
        click.echo(f"no users match {query!r}", err=True)
    for user in found:
        click.echo("\t".join((user.id, user.username, one_line(user.display_name))))


@click.command(help="Send TEXT to ROOM (a room id) and print the stored message's seq.")
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
    sent = saved_session(url).run(lambda plop: plop.send_message(room, text, client_id))
    click.echo(f"{sent.seq}\t{sent.id}" if show_id else sent.seq)


@click.command(help="Replace the text of your message MESSAGE_ID; print its seq.")
@click.argument("message_id")
@click.argument("text")
@URL_OPTION
def edit(message_id: str, text: str, url: str | None) -> None:
    click.echo(saved_session(url).run(lambda plop: plop.edit_message(message_id, text)).seq)


@click.command(help="Delete your message MESSAGE_ID (its seq stays, its text goes); print its seq.")
@click.argument("message_id")
@URL_OPTION
def delete(message_id: str, url: str | None) -> None:
    click.echo(saved_session(url).run(lambda plop: plop.delete_message(message_id)).seq)


@click.command(
    short_help="Print ROOM's messages (or the whole account's) as they arrive.",
    help=(
        "Print ROOM's messages as they arrive, one line each: SEQ<TAB>USERNAME<TAB>TEXT "
        "(newlines and tabs in TEXT escaped as \\n and \\t; an edited text ends with "
        '" (edited)", a deleted one reads "(deleted)"). Edits and deletes print the '
        'message\'s line again, and "USERNAME is typing…" when someone starts typing. '
        "Keeps going across dropped connections and server restarts without gaps or "
        "repeats (edits and typing made while it reconnects are not replayed). "
        "With --all instead of ROOM, follows every room of the account, each line "
        "starting with ROOM_ID<TAB>, and rooms joined and left and invitations too; "
        "from its first event on, nothing is missed across reconnects, and Ctrl+C "
        "prints the --since TOKEN that carries on from there (a token older than the "
        "server keeps events for is refused: start again without it)."
    ),
)
@click.argument("room", required=False)
@click.option(
    "--all",
    "whole_account",
    is_flag=True,
    help="Follow every room of the account instead of one ROOM.",
)
@click.option(
    "--since",
    default=None,
    metavar="TOKEN",
    help="With --all: print what followed the event of this token first [default: from now].",
)
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
def tail(
    room: str | None,
    whole_account: bool,
    since: str | None,
    after_seq: int | None,
    subprotocol: str,
    url: str | None,
) -> None:
    if (room is None) == (not whole_account):
        raise click.UsageError("name a ROOM or give --all (not both)")
    if whole_account and after_seq is not None:
        raise click.UsageError("--after-seq follows one ROOM; with --all use --since")
    if room is not None and since is not None:
        raise click.UsageError("--since goes with --all; to replay a ROOM use --after-seq")
    session = saved_session(url, subprotocol_named(subprotocol))
    if room is None:
        # Imported here: cli.account_tail prints with this module's line helpers.
        from cli.account_tail import follow_account

        session.run(lambda plop: follow_account(plop, since))
    else:
        session.run(lambda plop: _follow(plop, room, after_seq))


async def _follow(plop: PlopClient, room: str, after_seq: int | None) -> None:
    """Prints the room's messages and activity until either stream ends or fails."""
    start = after_seq if after_seq is not None else await plop.last_seq(room)
    click.echo(f"Following room {room} after seq {start}.", err=True)

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


@click.command(
    short_help="List your rooms, most recent first.",
    help="List your rooms, most recent first: ID<TAB>KIND<TAB>NAME<TAB>LAST_SEQ<TAB>UNREAD.",
)
@URL_OPTION
def rooms(url: str | None) -> None:
    lines = saved_session(url).run(_room_lines)
    if not lines:
        click.echo("no rooms yet", err=True)  # on stderr: the listing itself stays empty
    for line in lines:
        click.echo(line)


async def _room_lines(plop: PlopClient) -> list[str]:
    me = await plop.me()
    # The client's pages (20 rooms, each with its members) stay under the server's
    # query cost limit; 100 rooms a page would not.
    return [room_line(room, me.id) async for room in plop.rooms()]


@click.command(
    short_help="Open the 1:1 room with USER_ID; print its id.",
    help="Open the 1:1 room with USER_ID (the existing one if there is one); print its id.",
)
@click.argument("user_id")
@URL_OPTION
def direct(user_id: str, url: str | None) -> None:
    click.echo(saved_session(url).run(lambda plop: plop.create_direct_room(user_id)).id)


class _GroupCommands(click.Group):
    """``plop group TITLE [USER_ID]...`` creates a group, as it always did (options
    such as --url anywhere); a first argument that names a subcommand (rename, remove,
    role, create) runs that one."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return "create", self.commands["create"], args
        return super().resolve_command(ctx, args)


@click.group(
    cls=_GroupCommands,
    # The group's own options are --help alone: the others are create's (--url).
    context_settings={"ignore_unknown_options": True},
    short_help="Create a group room, or rename it, remove members, give roles.",
    help=(
        "plop group TITLE [USER_ID]... creates a group room and prints its id (you own "
        "it). The subcommands run one: its owner and admins rename it and remove "
        "members (an admin removes members only, nobody removes the owner); its owner "
        "alone gives roles."
    ),
)
def group() -> None:
    pass


@group.command(
    name="create",
    help=(
        "Create a group room TITLE with the given members; print its id. Your friends "
        "join at once; anyone else gets an invitation (`plop invitations`)."
    ),
)
@click.argument("title")
@click.argument("member_ids", nargs=-1, metavar="[USER_ID]...")
@URL_OPTION
def create_group(title: str, member_ids: tuple[str, ...], url: str | None) -> None:
    click.echo(saved_session(url).run(lambda plop: plop.create_group_room(title, member_ids)).id)


@group.command(help="Rename the group room ROOM to TITLE (owner and admins); print the title.")
@click.argument("room")
@click.argument("title")
@URL_OPTION
def rename(room: str, title: str, url: str | None) -> None:
    renamed = saved_session(url).run(lambda plop: plop.update_room(room, title))
    click.echo(one_line(renamed.title or ""))


@group.command(
    short_help="Remove USER_ID from the group room ROOM; print who is left.",
    help=(
        "Remove USER_ID from the group room ROOM (the owner removes anyone else, an admin "
        "members only); their subscriptions to the room end at once. Prints the members "
        "left: USER_ID<TAB>USERNAME<TAB>ROLE, oldest first."
    ),
)
@click.argument("room")
@click.argument("user_id")
@URL_OPTION
def remove(room: str, user_id: str, url: str | None) -> None:
    session = saved_session(url)
    _echo_members(
        session.run(lambda plop: _members_after(plop, room, plop.remove_member(room, user_id)))
    )


@group.command(
    short_help="Give USER_ID the ROLE in the group room ROOM; print the members.",
    help=(
        "Give USER_ID the ROLE in the group room ROOM (its owner alone may): ADMIN or "
        "MEMBER, or OWNER to hand the group over (you become an admin). Prints the "
        "members: USER_ID<TAB>USERNAME<TAB>ROLE, oldest first."
    ),
)
@click.argument("room")
@click.argument("user_id")
@click.argument("role", type=click.Choice([role.value for role in RoomRole], case_sensitive=False))
@URL_OPTION
def role(room: str, user_id: str, role: str, url: str | None) -> None:
    given = RoomRole(role.upper())
    session = saved_session(url)
    _echo_members(
        session.run(
            lambda plop: _members_after(plop, room, plop.set_member_role(room, user_id, given))
        )
    )


async def _members_after(
    plop: PlopClient, room: str, change: Awaitable[Room]
) -> list[RoomMembership]:
    """The room's members with their roles, once the change is made."""
    await change
    return [member async for member in plop.memberships(room)]


def _echo_members(members: list[RoomMembership]) -> None:
    for member in members:
        click.echo("\t".join((member.user.id, member.user.username, member.role.value)))


@click.group(
    invoke_without_command=True,
    short_help="List your group invitations; accept or decline one.",
    help=(
        "With no subcommand, list the group invitations waiting for your answer, newest "
        "first: ID<TAB>ROOM_ID<TAB>TITLE<TAB>INVITER."
    ),
)
@URL_OPTION
@click.pass_context
def invitations(context: click.Context, url: str | None) -> None:
    context.obj = url  # the subcommands' --url, given before them
    if context.invoked_subcommand is not None:
        return
    pending = saved_session(url).run(lambda plop: plop.room_invitations())
    if not pending:
        click.echo("no invitations", err=True)  # on stderr: the listing itself stays empty
    for invitation in pending:
        click.echo(invitation_line(invitation))


@invitations.command(help="Accept invitation ID: join its room; print the room's id.")
@click.argument("invitation_id")
@click.pass_obj
def accept(url: str | None, invitation_id: str) -> None:
    room = saved_session(url).run(
        lambda plop: plop.respond_to_room_invitation(invitation_id, accept=True)
    )
    assert room is not None  # accepting returns the room joined
    click.echo(room.id)


@invitations.command(help="Decline invitation ID.")
@click.argument("invitation_id")
@click.pass_obj
def decline(url: str | None, invitation_id: str) -> None:
    saved_session(url).run(
        lambda plop: plop.respond_to_room_invitation(invitation_id, accept=False)
    )
    click.echo("declined", err=True)


def _mute_end(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> datetime | None:
    """--until as an ISO 8601 time; one without a zone is in the terminal's time zone."""
    if value is None:
        return None
    try:
        until = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not a time like 2030-01-31T18:00 or 2030-01-31T18:00+01:00",
            context,
            parameter,
        ) from exc
    return until if until.tzinfo is not None else until.astimezone()


@click.command(
    short_help="No push for ROOM_ID until a time (or until unmuted).",
    help="No push for ROOM_ID until --until (ISO 8601), or until `plop unmute ROOM_ID`.",
)
@click.argument("room_id")
@click.option(
    "--until",
    default=None,
    metavar="TIME",
    callback=_mute_end,
    help="When the mute ends, e.g. 2030-01-31T18:00 (local time) [default: never].",
)
@URL_OPTION
def mute(room_id: str, until: datetime | None, url: str | None) -> None:
    room = saved_session(url).run(lambda plop: plop.mute_room(room_id, until))
    click.echo(f"muted until {room.muted_until.isoformat() if room.muted_until else 'unmuted'}")


@click.command(help="Pushes for ROOM_ID again.")
@click.argument("room_id")
@URL_OPTION
def unmute(room_id: str, url: str | None) -> None:
    saved_session(url).run(lambda plop: plop.unmute_room(room_id))
    click.echo("unmuted", err=True)


# --- a terminal's lines ---------------------------------------------------------------


def invitation_line(invitation: RoomInvitation) -> str:
    """ID<TAB>ROOM_ID<TAB>TITLE<TAB>INVITER (the inviter's username)."""
    title = one_line(invitation.room.title or "")
    return "\t".join((invitation.id, invitation.room.id, title, invitation.inviter.username))


def one_line(text: str) -> str:
    """Text on one line: backslash, newline, carriage return and tab escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def message_line(message: Message) -> str:
    """SEQ<TAB>USERNAME<TAB>TEXT, with " (edited)" after an edited text; "(deleted)"."""
    if message.deleted:
        text = "(deleted)"
    else:
        text = one_line(message.text) + (" (edited)" if message.edited_at else "")
    return f"{message.seq}\t{message.sender.username}\t{text}"


def room_line(room: Room, viewer_id: str) -> str:
    """ID<TAB>KIND<TAB>NAME<TAB>LAST_SEQ<TAB>UNREAD; a room without a title is named
    by its other members."""
    others = [member.username for member in room.members if member.id != viewer_id]
    name = room.title if room.title is not None else ",".join(others)
    return "\t".join(
        (room.id, room.kind.value, one_line(name), str(room.last_seq), str(room.unread_count))
    )


CHAT_COMMANDS = (
    signup,
    login,
    logout,
    sessions,
    end_session,
    passwd,
    delete_account,
    whoami,
    search,
    send,
    edit,
    delete,
    tail,
    rooms,
    direct,
    group,
    invitations,
    mute,
    unmute,
)
