"""Object ids as clients send them."""

from __future__ import annotations

from beanie import PydanticObjectId
from bson.errors import InvalidId

from errors import BadUserInput


def parse_id(value: str, what: str = "id") -> PydanticObjectId:
    """The object id in a client's string, or BAD_USER_INPUT naming the argument."""
    try:
        return PydanticObjectId(value)
    except (InvalidId, TypeError) as exc:
        raise BadUserInput(f"{what} is not a valid id: {value[:40]!r}") from exc


def parse_ids(values: list[str], what: str) -> list[PydanticObjectId]:
    """Each id parsed, duplicates removed, order kept."""
    return list(dict.fromkeys(parse_id(value, what) for value in values))
