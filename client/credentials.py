"""A saved session (server URL and token) in a file only its owner can read."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

CREDENTIALS_FILE = "credentials.json"
# Owner read/write only: the token is as good as the password until it expires.
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    token: str
    username: str
    user_id: str


def save_credentials(directory: Path, credentials: Credentials) -> Path:
    """Writes the credentials atomically; the file never exists with a wider mode.

    The content goes to a new file created with mode 0600, which then replaces the
    old one, so a reader sees the old file or the new one, never a partial one.
    """
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    target = directory / CREDENTIALS_FILE
    scratch = directory / f".{CREDENTIALS_FILE}.{secrets.token_hex(6)}"
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(asdict(credentials), file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(scratch, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        raise
    return target


def load_credentials(directory: Path) -> Credentials | None:
    """The saved credentials, or None if there are none (or they are unreadable)."""
    try:
        data = json.loads((directory / CREDENTIALS_FILE).read_text(encoding="utf-8"))
        return Credentials(
            url=str(data["url"]),
            token=str(data["token"]),
            username=str(data["username"]),
            user_id=str(data["user_id"]),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def delete_credentials(directory: Path) -> bool:
    """Removes the saved credentials; False if there were none."""
    try:
        (directory / CREDENTIALS_FILE).unlink()
    except FileNotFoundError:
        return False
    return True
