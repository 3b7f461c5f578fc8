"""An account stream to its socket, with each event rendered once for every stream.

Every account stream of this instance that follows a room is handed the very same
event object by the hub, so streams whose subscriptions render alike (the share key
of ``transport.sharing``) share one rendering of it: the first to reach an event
renders it, the others take that rendering. Only the token differs per stream (it
is the stream's own cursor): the shared rendering holds ``TOKEN_PLACEHOLDER`` where
the token goes, and each stream puts its own in. Events read from the store for one
stream (a catch-up) are objects of that stream alone, so each renders its own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextlib import aclosing
from typing import Generic, TypeVar

from live.account_stream import AccountStream, Given
from live.hub import raise_if_stopped
from live.room_feeds import PayloadSink
from observability.metrics import DELIVERIES

# Stands where a stream's token goes in a shared rendering: letters and digits only,
# so that JSON keeps it as it is, and unguessable, so that no text a user sends
# can hold it.
TOKEN_PLACEHOLDER = "plop-token-" + secrets.token_hex(16)
# Renderings kept: the events the account streams here are handed at about once.
SHARED_RENDERINGS = 4_096
# Renderers kept, one per share key (a document, its variables, a viewer perhaps).
RENDERERS = 1_024

R = TypeVar("R")


class AccountRenderings(Generic[R]):
    """The renderers of account events, and their recent renderings, shared here."""

    def __init__(self, renderers: int = RENDERERS, renderings: int = SHARED_RENDERINGS) -> None:
        self._renderers: OrderedDict[Hashable, R] = OrderedDict()
        self._renderer_capacity = renderers
        # (share key, id of the event) -> (the event, kept so that its id stays its
        # own while the entry lives; its rendering, made once).
        self._renderings: OrderedDict[
            tuple[Hashable, int], tuple[object, asyncio.Task[str | None]]
        ] = OrderedDict()
        self._rendering_capacity = renderings

    def renderer(self, key: Hashable, make: Callable[[], R]) -> R:
        """The renderer of the share key, made once while it is kept."""
        found = self._renderers.get(key)
        if found is None:
            found = self._renderers[key] = make()
            while len(self._renderers) > self._renderer_capacity:
                self._renderers.popitem(last=False)
        else:
            self._renderers.move_to_end(key)
        return found

    async def rendered(
        self, key: Hashable, item: object, render: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """The rendering of this very item under the share key, made once."""
        entry = self._renderings.get((key, id(item)))
        if entry is None or entry[0] is not item:
            # A task of its own: a stream that stops mid-rendering cancels no other's.
            task = asyncio.ensure_future(render())
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            entry = self._renderings[(key, id(item))] = (item, task)
            while len(self._renderings) > self._rendering_capacity:
                self._renderings.popitem(last=False)
        return await asyncio.shield(entry[1])


async def follow_account(
    stream: AccountStream,
    rendered: Callable[[Given], Awaitable[str | None]],
    token_of: Callable[[Given], Awaitable[str]],
    sink: PayloadSink,
) -> None:
    """Gives the stream's events to the sink, each rendered (None: nothing to show)
    with its token, until the sink takes no more. Raises what ends the stream (an
    expired token, say) for the client to see."""
    async with aclosing(stream.items()) as items:
        async for given in items:
            payload = await rendered(given)
            raise_if_stopped()
            if payload is None:
                continue
            if not sink.deliver(payload.replace(TOKEN_PLACEHOLDER, await token_of(given))):
                return
            DELIVERIES.inc()
