"""Shared room feeds: one rendering of each message for every socket that shares it.

graphql-core would run a subscription's selection once per subscriber per event.
A feed instead serves every local subscription of one room that would render a
message to the same bytes (same document, operation and variables, and no field
that reads the viewer; see ``transport.sharing``): it follows the room's one
ordered stream (``live.room_stream``, whose rules it does not repeat), renders each
message once, and hands the same payload to every follower's socket. Only the
frame prefix (the operation id) is per socket.

A follower is a position on that one stream: a follower that joins with afterSeq
behind the stream is first given the stored messages between its position and
the stream's (read through the stream's own ``RoomHistory``, or taken from the
feed's recent renderings), and only then goes live; every message reaches it once,
in seq order, and an ``Access`` step of the stream that no longer allows its viewer
ends it FORBIDDEN (``Access.refusal``). A live follower at the feed's position is
plain (``live.plain_followers``): each message goes to all of those in one loop,
with no check of position, access or end per follower, since the feed keeps those
true for all of them (it takes a follower out the moment it ends); one that joined
ahead of the feed is given messages one by one until the feed reaches it.

An activity feed does the same for ``roomActivity``: it follows the room's stream
for activity alone (``messages=False``), renders each event once in the order the
stream gives them, and hands it to every follower. Activity is live only, so a
follower joins at once and has nothing to catch up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from errors import BadUserInput, Unavailable
from live.hub import FanoutHub, raise_if_stopped
from live.plain_followers import PlainFollowers
from live.room_stream import STORED_BATCH, Access, RoomActivity, RoomHistory, RoomStream
from observability import tracing
from observability.metrics import ACTIVE_SUBSCRIPTIONS, DELIVERIES, FEED_RENDERINGS, ROOM_FEEDS
from pubsub import MessageData, MessageUpdated, ReactionChanged

logger = logging.getLogger(__name__)

# Renderings a feed keeps, newest first out last: followers that reconnect with a
# recent afterSeq catch up from here without reading the store or rendering again.
RECENT_RENDERINGS = 128
# Followers that catch up further back share pages of stored messages, each read
# and rendered once while anyone catches up through it.
CATCH_UP_PAGE = STORED_BATCH  # one read per page
CATCH_UP_PAGES = 8

Render = Callable[[MessageData], Awaitable[str]]
RenderActivity = Callable[[RoomActivity], Awaitable[str]]


def checked_after_seq(after_seq: int | None) -> int | None:
    if after_seq is not None and after_seq < 0:
        raise BadUserInput("afterSeq must be 0 or more")
    return after_seq


class FeedHistory(RoomHistory, Protocol):
    """What a feed reads beyond its room stream's reads."""

    async def hidden_from(self, event: RoomActivity, viewer_ids: Iterable[str]) -> set[str]:
        """Those of the viewers not shown this event (a blocked user's typing)."""
        ...


@dataclass(frozen=True, slots=True)
class FeedSource:
    """Where every feed of this instance gets its room's stream and stored messages."""

    hub: FanoutHub
    history: FeedHistory
    recheck_seconds: float

    async def open(
        self, stack: AsyncExitStack, room_id: str, *, messages: bool = True
    ) -> RoomStream:
        """The room's stream from now on, serving many followers; closed with the stack."""
        return await RoomStream.open(
            stack,
            self.hub,
            self.history,
            room_id,
            None,
            self.recheck_seconds,
            subscription=False,
            messages=messages,
        )


class PayloadSink(Protocol):
    """One subscription's way to its socket."""

    def deliver(self, payload: str) -> bool:
        """Queues one rendered payload; False once the subscription can take no more.

        Never waits, and never calls back into the feed (it runs inside the loop
        over a feed's followers)."""
        ...


class _Following:
    """One subscription following a feed: its socket, its viewer, and its end."""

    __slots__ = ("ended", "sink", "viewer_id")

    def __init__(self, sink: PayloadSink, viewer_id: str) -> None:
        self.sink = sink
        self.viewer_id = viewer_id
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end(self, error: Exception | None) -> None:
        """Ends the subscription: quietly (None), or with the error the client sees."""
        if self.ended.done():
            return
        if error is None:
            self.ended.set_result(None)
        else:
            self.ended.set_exception(error)


class Follower(_Following):
    """One messageAdded subscription: a position on its feed's room stream."""

    __slots__ = ("_plain", "last", "live")

    def __init__(self, sink: PayloadSink, viewer_id: str, last: int) -> None:
        super().__init__(sink, viewer_id)
        # The seq of the last message this follower was given one by one; once it is
        # plain, its feed's ``latest`` is its position.
        self.last = last
        self.live = False  # False while it catches up to the stream
        self._plain: PlainFollowers[Follower] | None = None

    def join_plain(self, plain: PlainFollowers[Follower]) -> None:
        """From now on the follower gets each message in its feed's one loop."""
        self._plain = plain
        plain.add(self, self.sink.deliver)

    @property
    def plain(self) -> bool:
        return self._plain is not None

    def end(self, error: Exception | None) -> None:
        # Out of the feed's loop at once: not one more message after its end.
        if self._plain is not None:
            self._plain.discard(self)
            self._plain = None
        super().end(error)

    def give(self, seq: int, payload: str) -> bool:
        """Hands the payload to the socket; True if it was queued there."""
        if seq <= self.last or self.ended.done():
            return False
        self.last = seq
        if not self.sink.deliver(payload):
            self.end(None)
            return False
        return True


def _end_refused(followers: Iterable[_Following], access: Access) -> None:
    """Ends (FORBIDDEN) every follower whose viewer the step no longer allows."""
    for follower in tuple(followers):
        if (refusal := access.refusal(follower.viewer_id)) is not None:
            follower.end(refusal)


class _FeedTask:
    """What every feed is: followers of one room, and the one task that feeds them."""

    def __init__(self, room_id: str, source: FeedSource) -> None:
        self.room_id = room_id
        self._source = source
        self.joining = 0  # followers waiting for the feed to be ready
        self._task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved here, so a failure nobody waited for is not reported twice.
        self.ready.add_done_callback(lambda done: done.cancelled() or done.exception())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def has_followers(self) -> bool:
        raise NotImplementedError

    @property
    def unused(self) -> bool:
        return not self.has_followers and not self.joining

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not self.ready.done():
            self.ready.cancel()


class RoomFeed(_FeedTask):
    """The followers of one room that share one rendering, and the task that feeds them."""

    def __init__(self, room_id: str, render: Render, source: FeedSource) -> None:
        super().__init__(room_id, source)
        self._render = render
        self.followers: set[Follower] = set()
        self.latest = 0  # every message up to here was given to the live followers
        self._plain: PlainFollowers[Follower] = PlainFollowers()
        # Live followers whose position is beyond the feed's (they joined with an
        # afterSeq the stream has not reached yet): plain once it reaches them.
        self._ahead: set[Follower] = set()
        self._recent: OrderedDict[int, str] = OrderedDict()
        self._pages: OrderedDict[int, asyncio.Task[dict[int, str]]] = OrderedDict()
        self._catching_up = 0

    @property
    def has_followers(self) -> bool:
        return bool(self.followers)

    def start(self) -> None:
        super().start()
        assert self._task is not None
        ROOM_FEEDS.inc()
        self._task.add_done_callback(lambda _: ROOM_FEEDS.dec())

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                stream = await self._source.open(stack, self.room_id)
                self.latest = stream.last
                self.ready.set_result(None)
                async for step in stream.steps():
                    if isinstance(step, Access):
                        _end_refused(self.followers, step)
                        if step.lagged:
                            # A dropped event may have been an edit: render anew.
                            self._recent.clear()
                            self._pages.clear()
                    elif isinstance(step, MessageData):
                        await self._publish(step)
                    elif isinstance(step, MessageUpdated):
                        self._forget_rendering(step.message.seq)
                    elif isinstance(step, ReactionChanged):
                        self._forget_rendering(step.seq)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("room feed failed", extra={"room": str(self.room_id)})
            error = Unavailable("the room's live feed failed; resubscribe with afterSeq")
            if not self.ready.done():
                self.ready.set_exception(error)
            for follower in tuple(self.followers):
                follower.end(error)
            raise exc from None

    async def _publish(self, message: MessageData) -> None:
        """Gives the stream's next message to every live follower, rendered once."""
        if tracing.active:
            # One span per message and feed, however many sockets follow it.
            with tracing.delivering(message.id, message.room_id):
                await self._hand_out(message)
        else:
            await self._hand_out(message)

    async def _hand_out(self, message: MessageData) -> None:
        payload = await self._rendering(message)
        seq = self.latest = message.seq
        plain = self._plain
        handed = len(plain)
        refused = plain.hand_out(payload)
        for follower in refused:
            follower.end(None)  # its socket takes no more: it resumes with afterSeq
        delivered = handed - len(refused)
        if self._ahead:
            delivered += self._reach_ahead(seq, payload)
        DELIVERIES.inc(delivered)  # once per message and feed, not per socket

    def _reach_ahead(self, seq: int, payload: str) -> int:
        """Gives the message to the followers ahead of the feed that it reaches (none
        below their position); those it reaches become plain."""
        delivered = 0
        for follower in tuple(self._ahead):
            delivered += follower.give(seq, payload)
            if follower.ended.done():
                self._ahead.discard(follower)
            elif follower.last <= seq:
                self._ahead.discard(follower)
                follower.join_plain(self._plain)
        return delivered

    def leave(self, follower: Follower) -> None:
        """Forgets a follower whose subscription ended."""
        follower.end(None)
        self.followers.discard(follower)
        self._ahead.discard(follower)

    def _forget_rendering(self, seq: int) -> None:
        """An edited or deleted message renders anew for anyone who catches up later."""
        self._recent.pop(seq, None)
        self._pages.pop((seq - 1) // CATCH_UP_PAGE, None)

    async def _rendering(self, message: MessageData) -> str:
        payload = self._recent.get(message.seq)
        if payload is None:
            payload = await self._render(message)
            raise_if_stopped()
            FEED_RENDERINGS.inc()
            self._recent[message.seq] = payload
            if len(self._recent) > RECENT_RENDERINGS:
                self._recent.popitem(last=False)
        return payload

    async def _stored_page(self, number: int) -> dict[int, str]:
        """Seqs ``number * CATCH_UP_PAGE + 1`` to the next page's first, read and
        rendered once for every follower catching up through them."""
        loading = self._pages.get(number)
        if loading is None:
            # A task of its own: a follower that leaves mid-read cancels no one else's.
            loading = self._pages[number] = asyncio.create_task(self._load_page(number))
            loading.add_done_callback(lambda done: done.cancelled() or done.exception())
            while len(self._pages) > CATCH_UP_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(number)
        return await asyncio.shield(loading)

    async def _load_page(self, number: int) -> dict[int, str]:
        first = number * CATCH_UP_PAGE + 1
        try:
            batch = await self._source.history.stored_batch(
                self.room_id, first - 1, first + CATCH_UP_PAGE
            )
            page = {
                message.seq: self._recent.get(message.seq) or await self._render(message)
                for message in batch
            }
        except BaseException:
            self._forget_page(number)
            raise
        FEED_RENDERINGS.inc(len(page))
        if len(page) < CATCH_UP_PAGE:
            self._forget_page(number)  # the room's newest page: it still grows
        return page

    def _forget_page(self, number: int) -> None:
        if self._pages.get(number) is asyncio.current_task():
            del self._pages[number]

    async def catch_up(self, follower: Follower) -> None:
        """Gives the follower what it missed up to the feed, then makes it live."""
        self._catching_up += 1
        try:
            while follower.last < self.latest:
                if follower.ended.done():
                    return
                target = self.latest
                wanted = follower.last + 1
                if (payload := self._recent.get(wanted)) is not None:
                    DELIVERIES.inc(follower.give(wanted, payload))
                    continue
                page = await self._stored_page((wanted - 1) // CATCH_UP_PAGE)
                delivered = 0
                for seq in range(wanted, target + 1):
                    payload = page.get(seq) or self._recent.get(seq)
                    if payload is None:
                        break
                    delivered += follower.give(seq, payload)
                DELIVERIES.inc(delivered)
                if follower.last < wanted and not follower.ended.done():
                    # Published messages are stored first: this is a store that lost them.
                    raise Unavailable(
                        "stored messages could not be read; resubscribe with afterSeq"
                    )
            if follower.ended.done():
                return
            follower.live = True
            # No await since the loop's last check: the follower is at the feed's
            # position, or ahead of it.
            if follower.last == self.latest:
                follower.join_plain(self._plain)
            else:
                self._ahead.add(follower)
        finally:
            self._catching_up -= 1
            if not self._catching_up:
                self._pages.clear()  # kept only while someone catches up through them


class ActivityFollower(_Following):
    """One roomActivity subscription: live only, so it has no position."""

    __slots__ = ()

    def give(self, payload: str) -> None:
        if not self.ended.done() and not self.sink.deliver(payload):
            self.end(None)


class ActivityFeed(_FeedTask):
    """The roomActivity followers of one room that share one rendering."""

    def __init__(self, room_id: str, render: RenderActivity, source: FeedSource) -> None:
        super().__init__(room_id, source)
        self._render = render
        self.followers: set[ActivityFollower] = set()

    @property
    def has_followers(self) -> bool:
        return bool(self.followers)

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                stream = await self._source.open(stack, self.room_id, messages=False)
                self.ready.set_result(None)
                async for step in stream.steps():
                    if isinstance(step, Access):
                        _end_refused(self.followers, step)
                    elif not isinstance(step, MessageData):
                        hidden = await self._source.history.hidden_from(
                            step, {follower.viewer_id for follower in self.followers}
                        )
                        payload = await self._render(step)
                        raise_if_stopped()
                        FEED_RENDERINGS.inc()
                        for follower in tuple(self.followers):
                            if follower.viewer_id not in hidden:
                                follower.give(payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("activity feed failed", extra={"room": str(self.room_id)})
            error = Unavailable("the room's activity feed failed; subscribe again")
            if not self.ready.done():
                self.ready.set_exception(error)
            for follower in tuple(self.followers):
                follower.end(error)
            raise exc from None


FeedT = TypeVar("FeedT", bound=_FeedTask)


@asynccontextmanager
async def _ready_feed(
    feeds: dict[Hashable, FeedT], key: Hashable, make: Callable[[], FeedT]
) -> AsyncIterator[FeedT]:
    """The key's running feed (started if there is none), once it is ready; when the
    block ends, a feed left without followers is stopped and forgotten."""
    feed = feeds.get(key)
    if feed is None or not feed.running:
        feed = feeds[key] = make()
        feed.start()
    feed.joining += 1
    try:
        try:
            await asyncio.shield(feed.ready)
        finally:
            feed.joining -= 1
        yield feed
    finally:
        if feed.unused:
            if feeds.get(key) is feed:
                del feeds[key]
            await feed.stop()


class RoomFeeds:
    """Every room feed of this instance, keyed by room and shared rendering."""

    def __init__(self, source: FeedSource) -> None:
        self._source = source
        self._feeds: dict[Hashable, RoomFeed] = {}
        self._activity: dict[Hashable, ActivityFeed] = {}

    async def follow_activity(
        self,
        room_id: str,
        viewer_id: str,
        share_key: Hashable,
        make_render: Callable[[], RenderActivity],
        sink: PayloadSink,
    ) -> None:
        """Streams the room's activity to the sink until the subscription ends.

        Returns when the sink takes no more; raises Forbidden when the viewer leaves
        the room. Cancelling the caller unfollows.
        """
        make = lambda: ActivityFeed(room_id, make_render(), self._source)  # noqa: E731
        async with _ready_feed(self._activity, (room_id, share_key), make) as feed:
            follower = ActivityFollower(sink, viewer_id)
            feed.followers.add(follower)
            ACTIVE_SUBSCRIPTIONS.inc()
            try:
                await follower.ended
            finally:
                follower.end(None)
                feed.followers.discard(follower)
                ACTIVE_SUBSCRIPTIONS.dec()

    async def follow(
        self,
        room_id: str,
        viewer_id: str,
        after_seq: int | None,
        share_key: Hashable,
        make_render: Callable[[], Render],
        sink: PayloadSink,
    ) -> None:
        """Streams the room's messages to the sink until the subscription ends.

        Returns when the sink takes no more; raises Forbidden when the viewer leaves
        the room. Cancelling the caller (the operation's task) unfollows.
        """
        checked_after_seq(after_seq)
        make = lambda: RoomFeed(room_id, make_render(), self._source)  # noqa: E731
        async with _ready_feed(self._feeds, (room_id, share_key), make) as feed:
            start = feed.latest if after_seq is None else after_seq
            follower = Follower(sink, viewer_id, start)
            feed.followers.add(follower)
            ACTIVE_SUBSCRIPTIONS.inc()
            try:
                await feed.catch_up(follower)
                await follower.ended
            finally:
                feed.leave(follower)
                ACTIVE_SUBSCRIPTIONS.dec()

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        activity, self._activity = list(self._activity.values()), {}
        for feed in feeds:
            await feed.stop()
        for activity_feed in activity:
            await activity_feed.stop()
