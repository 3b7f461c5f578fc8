"""``plop upload FILE ROOM``: a photo or file sent to a room, straight to storage."""

from __future__ import annotations

from pathlib import Path

import click

from cli.chat_session import URL_OPTION, saved_session


@click.command(
    short_help="Send FILE to ROOM; print SEQ<TAB>MESSAGE_ID<TAB>DOWNLOAD_URL.",
    help=(
        "Send FILE (a photo, a PDF, a text or office document) to ROOM (a room id): the "
        "bytes go straight to the server's file storage, then a message names them. "
        "Prints SEQ<TAB>MESSAGE_ID<TAB>DOWNLOAD_URL (the URL works for minutes only)."
    ),
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("room")
@click.option("--text", default="", help="Text sent with the file (none by default).")
@click.option(
    "--type",
    "content_type",
    default=None,
    help="Content type to announce [default: guessed from the file's name].",
)
@URL_OPTION
def upload(file: Path, room: str, text: str, content_type: str | None, url: str | None) -> None:
    sent = saved_session(url).run(
        lambda plop: plop.send_file(room, file, text, content_type=content_type)
    )
    links = "\t".join(attachment.url for attachment in sent.attachments)
    click.echo(f"{sent.seq}\t{sent.id}\t{links}")


UPLOAD_COMMANDS = (upload,)
