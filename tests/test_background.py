"""The background helper, with no server: passes that fail go on, a first wait is
kept, the relay's interval follows its outcome, and a stop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from app.background import open_background
from pubsub.memory import MemoryBroker
from services.locks import Locks
from services.publisher import EventPublisher
from services.relay import MessageRelay

TICK = 0.01


async def test_a_pass_that_raises_is_logged_and_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    third_call = asyncio.Event()

    async def failing_pass() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third_call.set()
        raise RuntimeError("backend down")

    async with open_background(stop_seconds=1.0) as background:
        background.every("flaky", failing_pass, TICK)
        await asyncio.wait_for(third_call.wait(), 5.0)
        assert background.running == ["flaky"]
    failures = [r for r in caplog.records if r.message == "background pass failed"]
    assert len(failures) >= 3
    assert all(getattr(r, "task", None) == "flaky" for r in failures)


async def test_a_pass_waits_its_first_interval_only_when_asked() -> None:
    started = time.monotonic()
    first_pass: dict[str, float] = {}
    both_ran = asyncio.Event()

    def recorder(name: str) -> Callable[[], Awaitable[None]]:
        async def one_pass() -> None:
            first_pass.setdefault(name, time.monotonic() - started)
            if len(first_pass) == 2:
                both_ran.set()

        return one_pass

    async with open_background(stop_seconds=1.0) as background:
        background.every("at-once", recorder("at-once"), 10.0)
        background.every("later", recorder("later"), 10.0, first_after=0.2)
        await asyncio.wait_for(both_ran.wait(), 5.0)
    assert first_pass["at-once"] < 0.1
    assert first_pass["later"] >= 0.2


async def test_the_wait_after_a_pass_follows_its_outcome() -> None:
    outcomes = iter([3, 0, None])
    seen: list[int | None] = []
    third_wait = asyncio.Event()

    async def one_pass() -> int:
        outcome = next(outcomes)
        if outcome is None:
            raise RuntimeError("failed")
        return outcome

    def wait_after(outcome: int | None) -> float:
        seen.append(outcome)
        if len(seen) < 3:
            return TICK
        third_wait.set()
        return 10.0

    async with open_background(stop_seconds=1.0) as background:
        background.every("counted", one_pass, wait_after)
        await asyncio.wait_for(third_wait.wait(), 5.0)
    assert seen == [3, 0, None]  # a failed pass is None


def test_the_relay_looks_often_while_busy_and_seldom_when_idle() -> None:
    relay = MessageRelay(
        EventPublisher(MemoryBroker(), {}, 1.0),
        Locks(Redis()),
        grace_seconds=1.0,
        interval_seconds=0.5,
        idle_interval_seconds=30.0,
    )
    relay.last_failure = time.monotonic() - 60  # no recent publish failure
    assert relay.wait_after(0) == 30.0
    assert relay.wait_after(2) == 0.5  # it relayed something: more may be left
    assert relay.wait_after(None) == 0.5  # the pass failed: try again soon
    relay.last_failure = time.monotonic()  # a publish just failed here
    assert relay.wait_after(0) == 0.5


async def test_a_stop_cancels_every_task_within_the_bound() -> None:
    cancelled: list[str] = []

    async def worker(ready: asyncio.Future[None]) -> None:
        ready.set_result(None)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("worker")
            raise

    async def slow_pass() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("pass")
            raise

    started = time.monotonic()
    async with open_background(stop_seconds=5.0) as background:
        await background.start("worker", worker)
        background.every("slow", slow_pass, 1.0)
        await asyncio.sleep(TICK)
    assert sorted(cancelled) == ["pass", "worker"]
    assert background.running == []
    assert time.monotonic() - started < 1.0


async def test_a_task_that_ignores_cancellation_is_reported_not_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn_pass() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # a call that refuses to give way
                await release.wait()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="app.background"):
        async with open_background(stop_seconds=0.2) as background:
            background.every("stubborn", stubborn_pass, 1.0)
            await asyncio.sleep(TICK)
    assert time.monotonic() - started < 1.0
    stuck = [r for r in caplog.records if r.message == "background task did not stop in time"]
    assert [getattr(r, "task", None) for r in stuck] == ["stubborn"]
    assert "stubborn_pass" in getattr(stuck[0], "waiting_at", "")
    # The left-behind task ends with this test, not with the session's loop: once
    # released it waits for its next turn, where a cancel is no longer ignored.
    release.set()
    await asyncio.sleep(TICK)
    left = [task for task in asyncio.all_tasks() if task.get_name() in ("stubborn", "background")]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


async def test_a_pass_that_swallowed_the_stop_s_cancel_ends_at_its_next_wait() -> None:
    """Python 3.11's ``asyncio.wait_for`` drops a cancel that lands as the call it waits
    on finishes; the loop must still end at its next wait, not sleep and run on."""
    entered = asyncio.Event()
    passes: list[int] = []

    async def swallowing_pass() -> None:
        passes.append(1)
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    started = time.monotonic()
    async with open_background(stop_seconds=5.0) as background:
        background.every("swallowing", swallowing_pass, 3600.0)
        await entered.wait()
    # Waiting out the hour's pause would take the whole stop_seconds.
    assert time.monotonic() - started < 1.0
    assert background.running == []
    assert passes == [1]


async def test_a_worker_that_fails_to_start_raises_from_start() -> None:
    async def refusing(ready: asyncio.Future[None]) -> None:
        raise ConnectionError("no broker")

    async with open_background(stop_seconds=1.0) as background:
        with pytest.raises(ConnectionError, match="no broker"):
            await background.start("refusing", refusing)
        assert background.running == []


async def test_work_run_once_ends_by_itself_and_a_failure_only_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = asyncio.Event()

    async def backfill() -> int:
        done.set()
        return 3

    async def broken() -> None:
        raise RuntimeError("store down")

    async def idle() -> None:
        pass

    async with open_background(stop_seconds=1.0) as background:
        background.once("backfill", backfill)
        background.once("broken", broken)
        background.every("pass", idle, 3600.0)  # the group goes on
        once = [task for task in background.still_running if task.get_name() != "pass"]
        await asyncio.wait(once, timeout=5.0)
        assert done.is_set()
        assert background.running == ["pass"]
    failures = [r for r in caplog.records if r.message == "background task failed"]
    assert [getattr(r, "task", None) for r in failures] == ["broken"]
