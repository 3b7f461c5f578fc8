"""A push worker catching up after an outage does not push what is older than its
``max_age``; it decides that before it reads anything. No server: the worker alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from devtools.sample_events import room_message
from observability.metrics import PUSHES_TOO_OLD
from pubsub.memory import MemoryBroker
from push.worker import PushWorker, RetryPolicy

NOTHING: Any = cast(Any, None)  # a dependency the worker must not reach


def worker(max_age: timedelta) -> PushWorker:
    return PushWorker(
        MemoryBroker(),
        topic="room-events",
        group="push",
        redis=NOTHING,
        presence=NOTHING,
        devices=NOTHING,
        blocks=NOTHING,
        providers={},
        retry=RetryPolicy(1, 0.1, 0.1, 1.0),
        max_age=max_age,
    )


def too_old_count() -> float:
    return PUSHES_TOO_OLD._value.get()  # type: ignore[no-any-return]


async def test_a_message_past_the_max_age_is_not_pushed_and_is_counted() -> None:
    old = replace(
        room_message("room", 1).message, created_at=datetime.now(UTC) - timedelta(hours=2)
    )
    before = too_old_count()
    await worker(timedelta(hours=1)).handle(old)  # reaches no store, Redis or device
    assert too_old_count() == before + 1


async def test_a_recent_message_goes_on_to_be_pushed() -> None:
    before = too_old_count()
    fresh = room_message("room", 1).message
    # It goes on to read its room: here there is no database, so that read fails.
    with pytest.raises(Exception):  # noqa: B017
        await worker(timedelta(hours=1)).handle(fresh)
    assert too_old_count() == before
