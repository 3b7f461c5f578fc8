"""An async iterator read in a background task, so that a test awaits what it yields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Generic, TypeVar

from tests.support.clients import EVENT_TIMEOUT_SECONDS

T = TypeVar("T")


class Iterated(Generic[T]):
    """Iterates ``stream`` in a task from now on; ``next``/``take`` await its items,
    and raise what it ended with."""

    def __init__(self, stream: AsyncGenerator[T, None]) -> None:
        self._items: asyncio.Queue[T | BaseException] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncGenerator[T, None]) -> None:
        try:
            async with aclosing(stream):
                async for item in stream:
                    self._items.put_nowait(item)
        except Exception as exc:
            self._items.put_nowait(exc)

    async def next(self, within: float = EVENT_TIMEOUT_SECONDS) -> T:
        async with asyncio.timeout(within):
            item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def take(self, count: int, within: float = EVENT_TIMEOUT_SECONDS) -> list[T]:
        """The next ``count`` items, within one deadline."""
        async with asyncio.timeout(within):
            return [await self.next(within) for _ in range(count)]

    async def failure(self, within: float = EVENT_TIMEOUT_SECONDS) -> BaseException:
        """What the iterator ended with (it must end, and yield nothing before)."""
        async with asyncio.timeout(within):
            item = await self._items.get()
        assert isinstance(item, BaseException), f"expected an error, got {item!r}"
        return item

    def assert_idle(self) -> None:
        assert self._items.empty(), f"unexpected extra item: {self._items.get_nowait()!r}"

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
