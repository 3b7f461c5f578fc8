"""The account stream's rules, with an in-memory store and hub (no server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from live.account_cursor import ALSO_SOFT_LIMIT, Cursor
from live.account_stream import AccountStream, Given, LeftRoom, Stored
from live.hub import FanoutHub
from live.room_stream import Membership
from pubsub import (
    MembersChanged,
    MessageAdded,
    MessageData,
    MessageUpdated,
    ReadReceipt,
    RoomAdded,
    TypingChanged,
)
from tests.support.iterated import Iterated

VIEWER = "viewer"
ROOM, OTHER = "room-1", "room-2"


def message(room_id: str, seq: int, pos: int) -> MessageData:
    return MessageData(
        id=f"{room_id}-{seq}",
        room_id=room_id,
        seq=seq,
        sender_id="sender",
        sender_username="sender",
        sender_display_name="Sender",
        text=f"{room_id} #{seq}",
        client_id=None,
        created_at=datetime.now(UTC),
        edited_at=None,
        deleted=False,
        pos=pos,
    )


class Store:
    """What the stream reads (``AccountHistory``), in memory."""

    def __init__(self) -> None:
        self.events: list[Stored] = []
        self.members: dict[str, set[str]] = {ROOM: {VIEWER}, OTHER: {VIEWER}}
        self.mark = 0  # the watermark
        self.replays = 0

    def store(self, item: MessageData | MessageUpdated | MembersChanged | RoomAdded) -> None:
        pos = item.pos
        assert pos is not None
        self.events.append(Stored(pos, item))
        self.mark = max(self.mark, pos)

    async def watermark(self) -> int:
        return self.mark

    async def rooms_of(self, viewer_id: str) -> set[str]:
        return {room for room, members in self.members.items() if viewer_id in members}

    async def replay(
        self, viewer_id: str, rooms: set[str], after: int, upto: int, limit: int
    ) -> tuple[list[Stored], int]:
        self.replays += 1
        found = sorted(
            (
                each
                for each in self.events
                if after < each.pos <= upto
                and (each.item.room_id in rooms or getattr(each.item, "user_id", "") == viewer_id)
            ),
            key=lambda each: each.pos,
        )
        if len(found) > limit:
            return found[:limit], found[limit - 1].pos
        return found, upto

    async def messages(
        self, room_id: str, after_seq: int, before_seq: int | None, above_pos: int
    ) -> list[MessageData]:
        return sorted(
            (
                each.item
                for each in self.events
                if isinstance(each.item, MessageData)
                and each.item.room_id == room_id
                and after_seq < each.item.seq < (before_seq or 10**9)
                and each.pos > above_pos
            ),
            key=lambda item: item.seq,
        )

    async def membership(self, room_id: str) -> Membership:
        return Membership(frozenset(self.members.get(room_id, set())), "tag")

    async def hidden_from_viewer(self, event: TypingChanged | ReadReceipt, viewer_id: str) -> bool:
        return event.user_id == "blocked"


async def opened(
    store: Store, since: Cursor | None, recheck_seconds: float = 3_600
) -> tuple[FanoutHub, Iterated[Given]]:
    hub = FanoutHub(inbox_capacity=100)
    stream = AccountStream(
        hub, store, VIEWER, since, recheck_seconds=recheck_seconds, replay_page=3
    )
    followed = Iterated(stream.items())
    async with asyncio.timeout(5):
        await stream.watching.wait()
    return hub, followed


async def take(items: Iterated[Given], count: int) -> list[Given]:
    return await items.take(count, within=5)


def texts(given: list[Given]) -> list[str]:
    return [each.item.text for each in given if isinstance(each.item, MessageData)]


async def test_a_replay_gives_what_followed_the_token_in_order_and_moves_the_cursor() -> None:
    store = Store()
    for pos, (room, seq) in enumerate([(ROOM, 1), (OTHER, 1), (ROOM, 2), (ROOM, 3)], start=1):
        store.store(message(room, seq, pos))
    store.store(message("not-mine", 1, 5))
    _, items = await opened(store, Cursor(upto=1, at=0.0))
    given = await take(items, 3)
    assert texts(given) == [f"{OTHER} #1", f"{ROOM} #2", f"{ROOM} #3"]
    assert [each.cursor.upto for each in given] == [2, 3, 4]
    assert all(not each.cursor.also for each in given)
    await items.close()


async def test_live_events_already_replayed_or_given_are_dropped() -> None:
    store = Store()
    first = message(ROOM, 1, 1)
    store.store(first)
    hub, items = await opened(store, Cursor(upto=0, at=0.0))
    (replayed,) = await take(items, 1)
    hub.dispatch(MessageAdded(first))  # the same message, late from the broker
    second = message(ROOM, 2, 2)
    hub.dispatch(MessageAdded(second))
    hub.dispatch(MessageAdded(second))  # redelivered
    store.store(second)
    third = message(ROOM, 3, 3)
    hub.dispatch(MessageAdded(third))
    store.store(third)
    given = await take(items, 2)
    assert texts([replayed, *given]) == [f"{ROOM} #1", f"{ROOM} #2", f"{ROOM} #3"]
    # Given live above upto: the cursor says so.
    assert given[-1].cursor.also == frozenset({2, 3})
    await items.close()


async def test_a_missed_message_is_read_from_the_store_before_the_one_after_it() -> None:
    store = Store()
    hub, items = await opened(store, None)
    for seq in (1, 2, 3):
        store.store(message(ROOM, seq, seq))
    hub.dispatch(MessageAdded(message(ROOM, 1, 1)))
    hub.dispatch(MessageAdded(message(ROOM, 3, 3)))  # 2 was lost
    given = await take(items, 3)
    assert texts(given) == [f"{ROOM} #1", f"{ROOM} #2", f"{ROOM} #3"]
    await items.close()


async def test_nothing_of_a_room_comes_after_its_room_left() -> None:
    store = Store()
    hub, items = await opened(store, None)
    store.members[ROOM].discard(VIEWER)
    hub.dispatch(MembersChanged(room_id=ROOM, added=(), removed=(VIEWER,), pos=1))
    hub.dispatch(MessageAdded(message(ROOM, 1, 2)))
    hub.dispatch(MessageAdded(message(OTHER, 1, 3)))
    store.store(message(OTHER, 1, 3))
    given = await take(items, 2)
    assert given[0].item == LeftRoom(ROOM)
    assert texts(given[1:]) == [f"{OTHER} #1"]
    await items.close()


async def test_a_room_joined_live_streams_at_once_from_its_join() -> None:
    store = Store()
    store.members["room-3"] = set()
    hub, items = await opened(store, None)
    store.store(message("room-3", 1, 1))  # before the join: not the viewer's
    store.members["room-3"].add(VIEWER)
    joined = RoomAdded(user_id=VIEWER, room_id="room-3", pos=2)
    store.store(joined)
    store.store(message("room-3", 2, 3))  # stored before the join reached the stream
    hub.dispatch(joined)
    given = await take(items, 2)
    assert given[0].item == joined
    assert texts(given[1:]) == ["room-3 #2"]
    hub.dispatch(MessageAdded(message("room-3", 2, 3)))  # its late event: dropped
    hub.dispatch(MessageAdded(message("room-3", 3, 4)))
    store.store(message("room-3", 3, 4))
    assert texts(await take(items, 1)) == ["room-3 #3"]
    await items.close()


async def test_the_cursor_stays_small_however_much_is_given_live() -> None:
    store = Store()
    hub, items = await opened(store, None)
    count = ALSO_SOFT_LIMIT * 4
    for seq in range(1, count + 1):
        store.store(message(ROOM, seq, seq))
        hub.dispatch(MessageAdded(message(ROOM, seq, seq)))
    given = await take(items, count)
    assert [each.item.seq for each in given if isinstance(each.item, MessageData)] == list(
        range(1, count + 1)
    )
    assert max(len(each.cursor.also) for each in given) <= ALSO_SOFT_LIMIT
    await items.close()


async def test_typing_and_receipts_of_a_blocked_user_are_not_given() -> None:
    store = Store()
    hub, items = await opened(store, None)
    for user in ("blocked", "friend"):
        hub.dispatch(
            TypingChanged(room_id=ROOM, user_id=user, username=user, display_name=user, typing=True)
        )
    (typing,) = await take(items, 1)
    assert isinstance(typing.item, TypingChanged) and typing.item.user_id == "friend"
    await items.close()


async def test_a_removal_whose_event_was_lost_ends_the_room_at_the_next_look() -> None:
    store = Store()
    _, items = await opened(store, None, recheck_seconds=0.05)
    store.members[ROOM].discard(VIEWER)  # its MembersChanged never reaches the stream
    (left,) = await take(items, 1)
    assert left.item == LeftRoom(ROOM)
    await items.close()
