"""RoomFeed catch-up (unit tests, no server): pages of stored messages are read and
rendered once for the followers that catch up through them together."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from errors import Unavailable
from live.hub import FanoutHub
from live.room_feeds import CATCH_UP_PAGE, FeedHistory, FeedSource, Follower, RoomFeed
from pubsub import MessageData


def message(seq: int) -> MessageData:
    return MessageData(
        id=f"m{seq}",
        room_id="r",
        seq=seq,
        sender_id="s",
        sender_username="s",
        sender_display_name="S",
        text=f"text {seq}",
        client_id=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        edited_at=None,
        deleted=False,
    )


class Store:
    """Stands in for the store's ``stored_batch``; holds reads until released."""

    def __init__(self, stored: int, missing: frozenset[int] = frozenset()) -> None:
        self.stored = stored
        self.missing = missing
        self.reads = 0
        self.release = asyncio.Event()

    async def stored_batch(
        self, room_id: Any, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        self.reads += 1
        await self.release.wait()
        upto = min(self.stored, (before_seq or self.stored + 1) - 1)
        seqs = range(after_seq + 1, min(upto, after_seq + CATCH_UP_PAGE) + 1)
        return [message(seq) for seq in seqs if seq not in self.missing]


class Sink:
    def __init__(self) -> None:
        self.payloads: list[str] = []

    def deliver(self, payload: str) -> bool:
        self.payloads.append(payload)
        return True


async def feed_over(store: Store, latest: int) -> tuple[RoomFeed, list[int]]:
    rendered: list[int] = []

    async def render(data: MessageData) -> str:
        rendered.append(data.seq)
        return f"<{data.seq}>"

    source = FeedSource(FanoutHub(16), cast(FeedHistory, store), recheck_seconds=60)
    feed = RoomFeed("r", render, source)
    feed.latest = latest
    return feed, rendered


async def test_followers_catching_up_together_share_each_page() -> None:
    store = Store(stored=250)
    feed, rendered = await feed_over(store, latest=250)
    sinks = [Sink() for _ in range(3)]
    followers = [Follower(sink, "v", 0) for sink in sinks]
    catching_up = [asyncio.create_task(feed.catch_up(follower)) for follower in followers]
    await asyncio.sleep(0)  # every follower waits on the first page now
    store.release.set()
    await asyncio.gather(*catching_up)
    expected = [f"<{seq}>" for seq in range(1, 251)]
    assert all(sink.payloads == expected for sink in sinks)
    assert all(follower.live for follower in followers)
    assert sorted(rendered) == list(range(1, 251))  # each message rendered once
    assert store.reads == 3  # one read per page, not per follower


async def test_a_gap_in_the_store_ends_the_follower_instead_of_skipping() -> None:
    store = Store(stored=10, missing=frozenset({4}))
    store.release.set()
    feed, _ = await feed_over(store, latest=10)
    sink = Sink()
    follower = Follower(sink, "v", 0)
    with pytest.raises(Unavailable):
        await feed.catch_up(follower)
    assert sink.payloads == ["<1>", "<2>", "<3>"]
    assert not follower.live
