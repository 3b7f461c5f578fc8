"""Opaque cursors and page-size rules shared by the Relay-style connections."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Generic, TypeVar

from errors import BadUserInput

T = TypeVar("T")

MAX_PAGE_SIZE = 100
# A cursor Plop made is a few dozen characters; a longer one was not made here.
MAX_CURSOR_CHARS = 256
# A number in a cursor (a seq, a millisecond timestamp) has at most 18 digits, so it
# fits in a 64-bit integer, which is what the database stores and compares.
MAX_CURSOR_NUMBER_DIGITS = 18
INVALID_CURSOR = "the cursor is not valid"


def encode_cursor(kind: str, *parts: str) -> str:
    """An opaque cursor; clients must not build or read one."""
    return base64.urlsafe_b64encode(":".join((kind, *parts)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, parts: int) -> list[str]:
    """The parts of a cursor made by ``encode_cursor(kind, ...)``; BAD_USER_INPUT otherwise."""
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise BadUserInput(INVALID_CURSOR)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fields = base64.urlsafe_b64decode(padded.encode()).decode().split(":", parts)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadUserInput(INVALID_CURSOR) from exc
    if len(fields) != parts + 1 or fields[0] != kind:
        raise BadUserInput(INVALID_CURSOR)
    return fields[1:]


def cursor_number(text: str) -> int:
    """A non-negative number read from a cursor's part: ASCII digits only, 1-18 of them.

    ``str.isdigit`` and ``int`` would also take other scripts' digits ("٣"), signs,
    spaces and underscores, and ``int`` refuses past 4,300 digits with a ValueError.
    """
    if not (0 < len(text) <= MAX_CURSOR_NUMBER_DIGITS and text.isascii() and text.isdigit()):
        raise BadUserInput(INVALID_CURSOR)
    return int(text)


def checked_page_size(value: int | None, argument: str, default: int) -> int:
    """The page size, or BAD_USER_INPUT if it is negative or over MAX_PAGE_SIZE."""
    size = default if value is None else value
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise BadUserInput(f"{argument} must be between 0 and {MAX_PAGE_SIZE}")
    return size


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A slice of an ordered list, with the paging flags Relay asks for."""

    items: list[T]
    has_next_page: bool
    has_previous_page: bool
