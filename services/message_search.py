"""Message search: the messages holding every word of a query, newest first.

Each message stores its text's tokens (``MessageDoc.search_tokens``, made by
``services.search_tokens`` when it is sent or edited, emptied when it is deleted),
so a search is one query on the messages: the room (or the viewer's rooms), one
token as an equality, the others as ``$all``, not deleted.

The query shape is the one both servers serve best. FerretDB 1.24 on PostgreSQL has
no ``$text`` and answers every filter with a sequential scan of the collection: it
pushes a top-level equality down to PostgreSQL (``_jsonb->'field' @> value``, which
its btree indexes cannot serve), checks ``$all``, ``$in`` and ranges itself, and
sorts and limits in its own process. So the longest token, the likeliest to be
rare, is the top-level equality that PostgreSQL filters on, with the room and
``deleted``. An index on the token arrays would not help it, and would refuse a
long message (a btree row holds at most 8 KiB): it is created only on MongoDB
(``{room_id, search_tokens, seq}``, multikey), where it serves both shapes.

Messages stored before search have no tokens: ``backfill`` gives them theirs, in
batches, once at every start (``app.runtime`` runs it in the background).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from beanie import PydanticObjectId, SortDirection
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from errors import BadUserInput
from models import MessageDoc, RoomDoc, UserDoc
from services.limits import LimitName, RateLimiter
from services.paging import (
    INVALID_CURSOR,
    Page,
    checked_page_size,
    cursor_number,
    decode_cursor,
    encode_cursor,
)
from services.relay import MessageRelay
from services.search_tokens import query_tokens, text_tokens

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_PAGE = 20
# Messages given their tokens per query of the backfill.
BACKFILL_BATCH = 200
SEARCH_INDEX = IndexModel(
    [("room_id", ASCENDING), ("search_tokens", ASCENDING), ("seq", DESCENDING)],
    name="room_tokens_seq",
)
# Cursors of a search in one room (by seq) and in every room (by time, then id).
ROOM_CURSOR = "find"
ROOMS_CURSOR = "findall"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def search_cursor(message: MessageDoc, in_one_room: bool) -> str:
    """Where a result stands in its search's order."""
    if in_one_room:
        return encode_cursor(ROOM_CURSOR, str(message.seq))
    return encode_cursor(ROOMS_CURSOR, str(_micros(message.created_at)), str(message.id))


def _after_in_room(cursor: str) -> dict[str, Any]:
    (seq,) = decode_cursor(cursor, ROOM_CURSOR, 1)
    return {"seq": {"$lt": cursor_number(seq)}}


def _after_in_rooms(cursor: str) -> dict[str, Any]:
    micros, message_id = decode_cursor(cursor, ROOMS_CURSOR, 2)
    try:
        at = _EPOCH + cursor_number(micros) * _MICROSECOND
        before_id = PydanticObjectId(message_id)
    except (OverflowError, ValueError) as exc:  # bson's InvalidId is a ValueError
        raise BadUserInput(INVALID_CURSOR) from exc
    return {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": before_id}}]}


Order = list[tuple[str, SortDirection]]


def search_query(
    tokens: list[str],
    room_id: PydanticObjectId | None,
    room_ids: list[PydanticObjectId] | None,
    after: str | None,
) -> tuple[dict[str, Any], Order]:
    """The filter and order of a search for ``tokens`` in one room, or (``room_id``
    None) in ``room_ids``, after a cursor: the shape the module's doc explains."""
    lead = max(tokens, key=len)  # the likeliest to be rare
    rest = [token for token in tokens if token != lead]
    conditions: list[dict[str, Any]] = [{"search_tokens": {"$all": rest}}] if rest else []
    if room_id is not None:
        if after is not None:
            conditions.append(_after_in_room(after))
        where: dict[str, Any] = {"room_id": room_id}
        order = [("seq", SortDirection.DESCENDING)]
    else:
        if after is not None:
            conditions.append(_after_in_rooms(after))
        where = {"room_id": {"$in": room_ids or []}}
        order = [("created_at", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)]
    where |= {"search_tokens": lead, "deleted": False}
    if conditions:
        where["$and"] = conditions
    return where, order


class _RoomId(BaseModel):
    """Projection: a room's id alone."""

    id: PydanticObjectId = Field(alias="_id")


class MessageSearch:
    """The rules of searchMessages; rooms are authorized by the caller."""

    def __init__(
        self, relay: MessageRelay, limits: RateLimiter, max_query_chars: int, real_store: bool
    ) -> None:
        self._real_store = real_store
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
        if room is not None:
            assert room.id is not None
            where, order = search_query(tokens, room.id, None, after)
        else:
            where, order = search_query(tokens, None, await self._rooms_of(viewer.id), after)
        rows = await MessageDoc.find(where).sort(order).limit(size + 1).to_list()
        return Page(
            rows[:size], has_next_page=len(rows) > size, has_previous_page=after is not None
        )

    @staticmethod
    async def _rooms_of(viewer_id: PydanticObjectId) -> list[PydanticObjectId]:
        rooms = await RoomDoc.find({"member_ids": viewer_id}).project(_RoomId).to_list()
        return [room.id for room in rooms]

    async def start_up(self) -> None:
        """Makes the store ready for search: its index, then the backfill."""
        if self._real_store:
            await self._prepare_index()
        await self.backfill()

    @staticmethod
    async def _prepare_index() -> None:
        """Creates the search index where the server can use it: on MongoDB, not on
        FerretDB (see the module's doc)."""
        collection = MessageDoc.get_pymongo_collection()
        info = await collection.database.command("buildInfo")
        if "ferretdbVersion" in info:
            logger.info("message search runs without a token index on FerretDB")
            return
        await collection.create_indexes([SEARCH_INDEX])

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
                {"$set": {"search_tokens": text_tokens(current.text)}}
            )
            return 1
