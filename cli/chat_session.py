"""How a chat command reaches the server: the session ``plop login`` saved, one
``PlopClient`` for the command's work, and the client's errors as one-line messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from cli.config import config_dir
from client import (
    DEFAULT_URL,
    TRANSPORT_WS,
    PlopClient,
    PlopClientError,
    PlopTransportError,
    Subprotocol,
    load_credentials,
    websocket_url,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChatSession:
    """The server a chat command talks to, and the token it signs in with (none to
    sign up or log in)."""

    url: str
    token: str | None = None
    subprotocol: Subprotocol = TRANSPORT_WS

    def run(self, work: Callable[[PlopClient], Awaitable[T]]) -> T:
        """Runs ``work`` with a client of this session; a Plop error becomes a one-line
        message and exit 1."""

        async def connected() -> T:
            async with PlopClient(self.url, self.token, self.subprotocol) as plop:
                return await work(plop)

        # The client reports reconnects as warnings; a terminal user wants to see them.
        logging.basicConfig(level=logging.WARNING, format="plop: %(message)s")
        try:
            return asyncio.run(connected())
        except PlopTransportError as error:
            # Its message names the URL that was tried ("cannot reach URL: ...").
            raise click.ClickException(error.message) from error
        except PlopClientError as error:
            hint = " (run `plop login USERNAME`)" if error.code == "UNAUTHENTICATED" else ""
            raise click.ClickException(f"{error.code}: {error.message}{hint}") from error


def saved_session(url: str | None, subprotocol: Subprotocol = TRANSPORT_WS) -> ChatSession:
    """The session saved by ``plop login``; --url overrides its URL."""
    credentials = load_credentials(config_dir())
    if credentials is None:
        raise click.ClickException("not logged in: run `plop login USERNAME` first")
    return ChatSession(url or credentials.url, credentials.token, subprotocol)


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
