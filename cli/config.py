"""Where the ``plop`` client commands keep the saved session.

``click.get_app_dir("plop")`` is the platform's place for it: ``$XDG_CONFIG_HOME/plop``
or ``~/.config/plop`` on Linux, ``~/Library/Application Support/plop`` on macOS,
``%APPDATA%\\plop`` on Windows. Older versions of Plop always used the XDG rule; a
credentials file found only there is moved to the new place on first use.
``$PLOP_CLIENT_CONFIG_DIR`` overrides both.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import click

from client import delete_credentials, load_credentials, save_credentials
from client.credentials import CREDENTIALS_FILE

CONFIG_DIR_VARIABLE = "PLOP_CLIENT_CONFIG_DIR"
APP_NAME = "plop"


def legacy_config_dir() -> Path:
    """Where Plop kept the credentials before: the XDG config dir, on every platform."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / APP_NAME


@dataclass(frozen=True, slots=True)
class Moved:
    """A credentials file that was moved from ``source`` to ``target``."""

    source: Path
    target: Path


def migrate_credentials(legacy: Path, current: Path) -> Moved | None:
    """Moves the credentials file from ``legacy`` to ``current`` if only ``legacy`` has one.

    The file is written anew at ``current`` (mode 0600, atomically) and only then
    removed from ``legacy``; an unreadable legacy file is left where it is.
    """
    if legacy.resolve() == current.resolve() or (current / CREDENTIALS_FILE).exists():
        return None
    credentials = load_credentials(legacy)
    if credentials is None:
        return None
    target = save_credentials(current, credentials)
    delete_credentials(legacy)
    with contextlib.suppress(OSError):
        legacy.rmdir()  # only if nothing else is in it
    return Moved(legacy / CREDENTIALS_FILE, target)


def config_dir() -> Path:
    """The directory of the credentials file, moving an old one there first."""
    if override := os.environ.get(CONFIG_DIR_VARIABLE):
        return Path(override)
    current = Path(click.get_app_dir(APP_NAME))
    if not current.is_absolute():
        # click takes a relative $XDG_CONFIG_HOME as it is; the XDG spec says to
        # ignore one, so the file never lands below whatever the current directory is.
        current = legacy_config_dir()
    moved = migrate_credentials(legacy_config_dir(), current)
    if moved is not None:
        click.echo(f"Moved the saved credentials from {moved.source} to {moved.target}.", err=True)
    return current
