"""``plop``: run the server, and use it from a terminal (log in, send, edit, follow a room)."""

from __future__ import annotations

import click

from cli.chat_commands import CHAT_COMMANDS
from cli.rich_commands import RICH_MESSAGE_COMMANDS
from cli.search_commands import SEARCH_COMMANDS
from cli.server_commands import SERVER_COMMANDS
from cli.upload_commands import UPLOAD_COMMANDS


@click.group(
    help="Plop: a real-time messenger backend served as one GraphQL API.",
    commands=[
        *SERVER_COMMANDS,
        *CHAT_COMMANDS,
        *RICH_MESSAGE_COMMANDS,
        *UPLOAD_COMMANDS,
        *SEARCH_COMMANDS,
    ],
)
@click.version_option(package_name="plop", prog_name="plop")
def main() -> None:
    pass
