"""Message search: the messages holding every word of a query, newest first.

Each message stores its text's tokens (``MessageDoc.search_tokens``, made by
``services.search_tokens`` when it is sent or edited, emptied when it is deleted)
and those tokens with the windows of its send time (``search_keys``,
``services.search_windows``). Results are ordered by send time, then id, in one room
as across rooms, so that one cursor kind and one window walk serve both.

The query shape is the one each server serves best. FerretDB 1.24 on PostgreSQL has
no ``$text`` and answers every filter with a sequential scan of the collection: it
pushes top-level equalities down to PostgreSQL (``_jsonb->'field' @> value``, which
its btree indexes cannot serve), checks ``$all``, ``$in``, ranges and ``$or`` itself,
and sorts and limits in its own process. So the longest token, the likeliest to be
rare, is the top-level equality, in its newest time window first (then wider ones,
then all time: ``search_windows``), with the room and ``deleted``; the other tokens
go in ``$all``. An index on the token arrays would serve nothing there and would
refuse a long message (a btree row holds at most 8 KiB). On MongoDB the index
``{room_id, search_tokens, created_at, _id}`` (multikey) serves one query for both
shapes, without windows.

Messages stored before search have no tokens: ``backfill`` gives them theirs, in
batches, once at every start (``app.runtime`` runs it in the background).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId, SortDirection
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel

from errors import BadUserInput
from models import MessageDoc, RoomDoc, UserDoc
from models.time import utc_now
from services.joined_rooms import joined_room_ids
from services.paging import (
    INVALID_CURSOR,
    Page,
    checked_page_size,
    cursor_number,
    decode_cursor,
    encode_cursor,
)
from services.rate_limits import LimitName, RateLimiter
from services.relay import MessageRelay
from services.search_tokens import query_tokens
from services.search_windows import WINDOW_BITS, search_fields, window_key, window_start

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_PAGE = 20
# Messages given their tokens per query of the backfill.
BACKFILL_BATCH = 200
SEARCH_INDEX = IndexModel(
    [
        ("room_id", ASCENDING),
        ("search_tokens", ASCENDING),
        ("created_at", DESCENDING),
        ("_id", DESCENDING),
    ],
    name="room_tokens_time",
)
SEARCH_CURSOR = "found"
ORDER = [("created_at", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def search_cursor(message: MessageDoc) -> str:
    """Where a result stands in the search order: its send time, then its id."""
    return encode_cursor(SEARCH_CURSOR, str(_micros(message.created_at)), str(message.id))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: before this send time (and, at that time, this id)."""

    sent_at: datetime
    message_id: PydanticObjectId | None = None


def _position(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    micros, message_id = decode_cursor(cursor, SEARCH_CURSOR, 2)
    try:
        return Position(_EPOCH + cursor_number(micros) * _MICROSECOND, PydanticObjectId(message_id))
    except (OverflowError, InvalidId, TypeError) as exc:
        raise BadUserInput(INVALID_CURSOR) from exc


def _before(position: Position) -> dict[str, Any]:
    if position.message_id is None:
        return {"created_at": {"$lt": position.sent_at}}
    at = position.sent_at
    return {
        "$or": [
            {"created_at": {"$lt": at}},
            {"created_at": at, "_id": {"$lt": position.message_id}},
        ]
    }


def search_steps(
    tokens: list[str],
    rooms: PydanticObjectId | list[PydanticObjectId],
    after: Position | None,
    windowed: bool,
) -> list[dict[str, Any]]:
    """The filters a search runs, in order, until its page is full: one (all time)
    without windows; with them, the newest window of each size, then all time, each
    only before the one asked before it. Their results follow each other in ORDER."""
    lead = max(tokens, key=len)  # the likeliest to be rare
    rest = [token for token in tokens if token != lead]
    base: dict[str, Any] = {"room_id": rooms if not isinstance(rooms, list) else {"$in": rooms}}
    base["deleted"] = False
    both: list[dict[str, Any]] = [{"search_tokens": {"$all": rest}}] if rest else []
    steps: list[tuple[str, str, Position | None]] = []
    bound = after
    if windowed:
        at = after.sent_at if after is not None else utc_now()
        for bits in WINDOW_BITS:
            steps.append(("search_keys", window_key(lead, bits, at), bound))
            bound = Position(window_start(bits, at))
    steps.append(("search_tokens", lead, bound))
    filters = []
    for field, value, before in steps:
        conditions = both + ([_before(before)] if before is not None else [])
        where = {**base, field: value}
        if conditions:
            where["$and"] = conditions
        filters.append(where)
    return filters


class MessageSearch:
    """The rules of searchMessages; rooms are authorized by the caller."""

    def __init__(
        self, relay: MessageRelay, limits: RateLimiter, max_query_chars: int, real_store: bool
    ) -> None:
        self._real_store = real_store
        # Windows until the server is known to be MongoDB (see the module's doc).
        self._windowed = True
        self._relay = relay
        self._limits = limits
        self._max_query_chars = max_query_chars

    def _tokens(self, query: str) -> list[str]:
        if len(query) > self._max_query_chars:
            raise BadUserInput(f"query must be at most {self._max_query_chars} characters long")
        tokens = query_tokens(query)
        if not tokens:
            raise BadUserInput("query must contain a word (a letter or a digit)")
        return tokens

    async def search(
        self,
        viewer: UserDoc,
        query: str,
        room: RoomDoc | None,
        first: int | None,
        after: str | None,
    ) -> Page[MessageDoc]:
        """A page of the messages holding every word of ``query``, newest first: in
        ``room`` (a room the viewer is in), or in every room the viewer is in."""
        assert viewer.id is not None
        await self._limits.hit(LimitName.SEARCH_MESSAGES, str(viewer.id))
        size = checked_page_size(first, "first", DEFAULT_SEARCH_PAGE)
        tokens = self._tokens(query)
        rooms = room.id if room is not None and room.id is not None else None
        steps = search_steps(
            tokens,
            rooms if rooms is not None else await joined_room_ids(viewer.id),
            _position(after),
            self._windowed,
        )
        rows: list[MessageDoc] = []
        for where in steps:
            wanted = size + 1 - len(rows)
            if wanted <= 0:
                break
            rows += await MessageDoc.find(where).sort(ORDER).limit(wanted).to_list()
        return Page(
            rows[:size], has_next_page=len(rows) > size, has_previous_page=after is not None
        )

    async def start_up(self) -> None:
        """Makes the store ready for search: its index, then the backfill."""
        if self._real_store:
            await self._prepare_index()
        await self.backfill()

    async def _prepare_index(self) -> None:
        """On MongoDB, creates the search index and searches without windows; on
        FerretDB, keeps the windows and no index (see the module's doc)."""
        collection = MessageDoc.get_pymongo_collection()
        info = await collection.database.command("buildInfo")
        if "ferretdbVersion" in info:
            logger.info("message search walks time windows on FerretDB")
            return
        await collection.create_indexes([SEARCH_INDEX])
        self._windowed = False

    async def backfill(self) -> int:
        """Gives every message stored without tokens its tokens; returns how many.

        Each is written under the message's lock and only if it still has none, so
        an edit or a delete racing it keeps its own tokens (on FerretDB an update
        writes back the whole document it read). Instances starting together share
        the work: what another gave tokens to meanwhile is skipped.
        """
        given = 0
        seen: set[PydanticObjectId] = set()
        while (
            batch := await MessageDoc.find({"search_tokens": None, "deleted": False})
            .limit(BACKFILL_BATCH)
            .to_list()
        ):
            if all(message.id in seen for message in batch):
                # Found again after its turn: the store does not see the writes.
                logger.warning("message search backfill made no progress")
                break
            for message in batch:
                assert message.id is not None
                seen.add(message.id)
                given += await self._give_tokens(message.id)
        if given:
            logger.info("message search backfill done", extra={"messages": given})
        return given

    async def _give_tokens(self, message_id: PydanticObjectId) -> int:
        async with self._relay.writing(message_id):
            current = await MessageDoc.get(message_id)
            if current is None or current.search_tokens is not None:
                return 0
            await MessageDoc.find_one({"_id": message_id}).update(
                {"$set": search_fields(current.text, current.created_at)}
            )
            return 1
