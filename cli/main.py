"""``plop``: run the server, and use it from a terminal (log in, send, edit, follow a room)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from contextlib import aclosing
from typing import Any, TypeVar

import click
import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import ChangeReload, Multiprocess

from cli.config import config_dir
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
from errors import ConfigError
from observability.logs import configure_logging
from settings import Settings

T = TypeVar("T")

# Of PLOP_SHUTDOWN_SECONDS, what uvicorn's wait for requests in flight may take.
UVICORN_STOP_SHARE = 0.25


@click.group(help="Plop: a real-time messenger backend served as one GraphQL API.")
@click.version_option(package_name="plop", prog_name="plop")
def main() -> None:
    pass


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _logging(level: str, log_format: str) -> dict[str, Any]:
    """Installs the logging setup; a level logging does not know is a usage error."""
    try:
        return configure_logging(level, log_format)
    except ValueError as exc:
        raise click.ClickException(f"PLOP_LOG_LEVEL: {exc}") from exc


def _settings() -> Settings:
    """The settings from the environment; a bad value is one line, not a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PLOP_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc


def _checked_proxies(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    if value is not None:
        from transport.client_address import trusted_networks

        try:
            trusted_networks(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), context, parameter) from exc
    return value


@main.command(help="Serve the GraphQL API (GraphiQL at http://HOST:PORT/graphql).")
@click.option("--host", default=None, help="Interface to bind [default: PLOP_HOST or 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default: PLOP_PORT or 8000].")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level [default: PLOP_LOG_LEVEL or info].",
)
@click.option("--reload", is_flag=True, help="Development: restart when a source file changes.")
@click.option(
    "--forwarded-allow-ips",
    default=None,
    metavar="IPS",
    callback=_checked_proxies,
    help=(
        "Proxies (addresses or networks, comma-separated) whose X-Forwarded-For names "
        "the client [default: PLOP_FORWARDED_ALLOW_IPS, else none]."
    ),
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each a full instance (needs the real backends).",
)
def serve(
    host: str | None,
    port: int | None,
    log_level: str | None,
    reload: bool,
    forwarded_allow_ips: str | None,
    workers: int,
) -> None:
    settings = _settings()
    if forwarded_allow_ips is not None:
        settings.forwarded_allow_ips = forwarded_allow_ips
        # A reloading server builds its settings from the environment, in a child.
        os.environ["PLOP_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    host = host or settings.host
    port = port if port is not None else settings.port
    if workers > 1 and reload:
        raise click.UsageError("--reload serves one process: leave out --workers")
    if workers > 1 and (embedded := settings.embedded_backends):
        raise click.ClickException(
            f"--workers {workers} needs the real backends: {', '.join(embedded)} "
            "point at memory://, an in-process stand-in that each worker would hold apart"
        )
    level = (log_level or settings.log_level).lower()
    log_config = _logging(level, settings.log_format)
    if settings.admin_port == port:
        raise click.UsageError(f"PLOP_ADMIN_PORT must differ from the public port {port}")
    base = f"http://{host}:{port}"
    logging.getLogger("plop").info(
        "serving GraphiQL at %s/graphql and the web page at %s/", base, base
    )
    listeners = [_listen(host, port)]
    if settings.admin_port is not None:
        # The same app on a second socket: observability.admin tells the two apart.
        listeners.append(_listen(settings.admin_host, settings.admin_port))
        admin = f"http://{settings.admin_host}:{settings.admin_port}"
        logging.getLogger("plop").info("serving /metrics and /readyz at %s only", admin)
    options: dict[str, Any] = {
        "ws_max_size": settings.max_websocket_message_bytes,
        "ws_per_message_deflate": settings.websocket_compression,
        "log_config": log_config,
        "log_level": level,
        # observability.logs.RequestLog writes one line per request, with its id.
        "access_log": False,
        "lifespan": "on",
        # X-Forwarded-For is Plop's to judge (PLOP_FORWARDED_ALLOW_IPS), not uvicorn's.
        "proxy_headers": False,
        # How long uvicorn's own stop waits for requests in flight; the app's drain
        # comes before it and the lifespan's shutdown after it (app.shutdown).
        "timeout_graceful_shutdown": settings.shutdown_seconds * UVICORN_STOP_SHARE,
    }
    if reload:
        # A reloading server imports the app anew in a child process, from the
        # environment's settings; --host, --port and --log-level still apply.
        config = uvicorn.Config(
            "main:create_app", factory=True, reload=True, host=host, port=port, **options
        )
        ChangeReload(config, target=uvicorn.Server(config).run, sockets=listeners).run()
        return
    if workers > 1:
        # Each worker imports the app by name and builds it from the environment; they
        # all accept on the sockets bound here. The parent passes SIGTERM on to each,
        # and each stops gracefully on its own.
        config = uvicorn.Config("main:create_worker_app", factory=True, workers=workers, **options)
        Multiprocess(config, sockets=listeners).run()
        return
    from main import create_app

    uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run(sockets=listeners)


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before any backend is opened, so that a
    port in use fails at once with one clear line instead of after a full start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


@main.command(
    name="push-worker",
    help=(
        "Run the push worker on its own, without HTTP: it joins the push consumer group "
        "the server instances share (set PLOP_PUSH_WORKER_ENABLED=false on the servers "
        "to leave pushing to workers like this one)."
    ),
)
def push_worker() -> None:
    settings = _settings()
    settings.push_worker_enabled = True
    if not (settings.push_fcm_service_account_file or settings.push_webhook_url):
        raise click.ClickException(
            "no push provider is configured: set PLOP_PUSH_FCM_SERVICE_ACCOUNT_FILE "
            "and/or PLOP_PUSH_WEBHOOK_URL"
        )
    _logging(settings.log_level, settings.log_format)
    from app.runtime import open_runtime

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)
        async with open_runtime(settings):
            logging.getLogger("plop.push_worker").info("push worker running")
            await stop.wait()

    try:
        asyncio.run(run())
    except ConfigError as exc:  # an unreachable backend too: one line, not a traceback
        raise click.ClickException(f"cannot start: {exc}") from exc


@main.command(
    "bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    help="Run a benchmark scenario (plop bench --help lists the scenarios and options).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    # Imported here: the benchmark pulls in matplotlib, which the other commands need
    # not load (nor let it write its caches under the user's home).
    try:
        from bench.cli import main as run_bench
    except ImportError as exc:
        raise click.ClickException(
            "plop bench needs the bench extra: pip install -e '.[bench]'"
        ) from exc
    raise SystemExit(run_bench(list(args)))


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
