"""What the scale scenario reads from each instance while it runs: its CPU time and
RSS (psutil), and from its ``/metrics`` the records its broadcast consumers read
(``plop_kafka_records_consumed_total``) and the subscriptions it streams.

Every measured window polls every instance's ``/metrics`` at the same pace
(``POLL_SECONDS``): the wait for a consumer to finish a backlog has to, and an
exposition costs the instance some CPU, so the idle windows poll alike and the
subtraction of their rate takes that cost out again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.common import machine_busy_seconds
from bench.server import ServerProcess

POLL_SECONDS = 0.25
CONSUMED = "plop_kafka_records_consumed_total"
ACTIVE = "plop_subscriptions_active"


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                total += float(found.value)
    return total


@dataclass(frozen=True)
class Consumed:
    """An instance's records read so far, by outcome."""

    dropped: float
    decoded: float


@dataclass(frozen=True)
class Window:
    """What each instance spent over a stretch of time, and the machine with them."""

    seconds: float
    cpu_seconds: list[float]
    machine_busy_share: float
    load_average: list[float]


class InstanceProbe:
    """Reads the instances of one run (the front first, then the socket holders)."""

    def __init__(self, instances: Sequence[ServerProcess]) -> None:
        self.instances = list(instances)
        self._client = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        await self._client.aclose()

    async def metrics(self, instance: ServerProcess) -> str:
        response = await self._client.get(f"{instance.base_url}/metrics")
        response.raise_for_status()
        return response.text

    async def consumed(self, instance: ServerProcess, topic: str) -> Consumed:
        text = await self.metrics(instance)
        return Consumed(
            metric_sum(text, CONSUMED, topic=topic, outcome="dropped"),
            metric_sum(text, CONSUMED, topic=topic, outcome="decoded"),
        )

    async def consumed_all(self, topic: str) -> list[Consumed]:
        return list(
            await asyncio.gather(*(self.consumed(instance, topic) for instance in self.instances))
        )

    async def subscriptions(self, instance: ServerProcess) -> int:
        return int(metric_sum(await self.metrics(instance), ACTIVE))

    async def wait_subscriptions(
        self, instance: ServerProcess, at_least: int, within: float
    ) -> int:
        """Waits until the instance streams at least this many; the count it reached."""
        deadline = time.monotonic() + within
        count = await self.subscriptions(instance)
        while count < at_least and time.monotonic() < deadline:
            # Another process's gauge: there is no event to await across processes.
            await asyncio.sleep(POLL_SECONDS)
            count = await self.subscriptions(instance)
        return count

    def cpu(self) -> list[float]:
        return [instance.cpu_seconds() for instance in self.instances]

    def rss(self) -> list[int]:
        return [instance.rss_bytes() for instance in self.instances]

    @asynccontextmanager
    async def paused(self, which: Sequence[ServerProcess] = ()) -> AsyncIterator[None]:
        """These instances (all by default) stopped (SIGSTOP) inside the block, resumed
        after it: what is published meanwhile waits for their consumers as a backlog."""
        processes = [psutil.Process(instance.pid) for instance in which or self.instances]
        for process in processes:
            process.suspend()
        try:
            yield
        finally:
            for process in processes:
                process.resume()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.metrics(instance) for instance in self.instances))
            await asyncio.sleep(POLL_SECONDS)

    @asynccontextmanager
    async def polled(self) -> AsyncIterator[None]:
        """Polls every instance's /metrics inside the block, as the backlog wait does."""
        task = asyncio.create_task(self._poll_forever())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def idle(self, seconds: float) -> Window:
        """The instances' CPU over ``seconds`` with nothing sent (polled as always)."""
        async with self.polled(), self.measured() as window:
            # The cost of a stretch of time: there is no event to wait for.
            await asyncio.sleep(seconds)
        return window.result()

    def measured(self) -> WindowClock:
        return WindowClock(self)

    async def wait_consumed(
        self, topic: str, dropped_at_least: list[float], started: float, within: float
    ) -> tuple[list[float], list[float], list[Consumed]]:
        """Polls until each instance has dropped at least its figure of records; per
        instance the seconds since ``started`` (``time.monotonic``) it took and its CPU
        time then (one that does not get there within ``within`` s is read at the
        deadline), and its counts."""
        pending = set(range(len(self.instances)))
        seconds = [0.0] * len(self.instances)
        cpu = [0.0] * len(self.instances)
        counts: list[Consumed] = [Consumed(0.0, 0.0)] * len(self.instances)
        while pending:
            now_counts = await self.consumed_all(topic)
            now = time.monotonic()
            for index in tuple(pending):
                counts[index] = now_counts[index]
                if now_counts[index].dropped >= dropped_at_least[index] or now > started + within:
                    seconds[index] = now - started
                    cpu[index] = self.instances[index].cpu_seconds()
                    pending.discard(index)
            if pending:
                # Other processes' counters: there is no event to await across processes.
                await asyncio.sleep(POLL_SECONDS)
        return seconds, cpu, counts


class WindowClock:
    """``async with probe.measured() as clock``: the instances' CPU and the machine's
    busy time from the block's start to its end (``clock.result()``)."""

    def __init__(self, probe: InstanceProbe) -> None:
        self._probe = probe
        self._started = 0.0
        self._cpu: list[float] = []
        self._busy = 0.0
        self._window: Window | None = None

    async def __aenter__(self) -> WindowClock:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._cpu = self._probe.cpu()
        self._busy = machine_busy_seconds()

    def stop(self) -> None:
        seconds = time.monotonic() - self._started
        cpu = [after - before for after, before in zip(self._probe.cpu(), self._cpu, strict=True)]
        cores = os.cpu_count() or 1
        busy = (machine_busy_seconds() - self._busy) / (seconds * cores) if seconds > 0 else 0.0
        self._window = Window(
            round(seconds, 3),
            cpu,
            round(busy, 3),
            [round(load, 2) for load in os.getloadavg()],
        )

    def result(self) -> Window:
        if self._window is None:
            raise RuntimeError("the window has not ended")
        return self._window
