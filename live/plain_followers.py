"""A feed's plain followers, and the one loop that hands each of them a message.

A room feed (``live.room_feeds``) decides once per message what holds for most of
its followers: they are at the feed's position (the message is the next one for
each of them), no ``Access`` step has refused their viewer, and they have not
ended. Checking those per follower per message is the work that made fan-out cost
more than the bytes it writes, so a follower for which they hold is kept here,
and the loop over them does only what is each socket's own: its sink writes the
shared frame's bytes (its operation still open, its queue not full). A follower
for which they do not hold (one catching up, one ahead of the feed, one that
ended) is not here: the feed gives it its messages one by one, checking each.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

FollowerT = TypeVar("FollowerT", bound=Hashable)

# Takes one rendered payload; False once its subscription takes no more.
Deliver = Callable[[str], bool]


class PlainFollowers(Generic[FollowerT]):
    """The followers at their feed's position, each with its sink's ``deliver``."""

    __slots__ = ("_sinks",)

    def __init__(self) -> None:
        # Insertion-ordered: followers get a message in the order they went live.
        self._sinks: dict[FollowerT, Deliver] = {}

    def __len__(self) -> int:
        return len(self._sinks)

    def __contains__(self, follower: object) -> bool:
        return follower in self._sinks

    def add(self, follower: FollowerT, deliver: Deliver) -> None:
        self._sinks[follower] = deliver

    def discard(self, follower: FollowerT) -> None:
        self._sinks.pop(follower, None)

    def hand_out(self, payload: str) -> list[FollowerT]:
        """Gives the payload to every follower here; those whose sink refused it.

        A sink never waits and never calls back into its feed (``PayloadSink``), so
        nobody joins or leaves while the loop runs; the caller ends the refused ones
        (which takes them out) after it.
        """
        refused: list[FollowerT] = []
        for follower, deliver in self._sinks.items():
            if not deliver(payload):
                refused.append(follower)
        return refused
