"""One stop and start of the shared Kafka, observed by every test that needs an outage.

Stopping and starting Kafka takes most of a minute, so the tests marked
``restarts_kafka`` do not each take the broker down: each names a *scenario*
(``@pytest.mark.restarts_kafka(scenario=...)``), and the session fixture
``kafka_outage`` (tests/conftest.py) runs the scenarios of all selected tests side
by side around one outage, then each test reports its own scenario's outcome.

A scenario reads in order, like a test::

    async def scenario(servers: OutageServers, outage: KafkaOutage) -> None:
        ...  # subscribe, send: the broker is up
        async with outage.down():
            ...  # the broker is down, for every scenario at once
        ...  # the broker is back: check what arrived

Kafka stops once every scenario still running has entered ``outage.down()``, and
starts again once every one has left it; a scenario that fails early drops out
instead of holding the others up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.support.server import ServerProcess
from tests.support.services import services_script

# Stopping Kafka, and starting it again (scripts/services.sh waits up to 120 s for it
# to be ready); each step is bounded on its own.
KAFKA_STOP_SECONDS = 120.0
KAFKA_START_SECONDS = 300.0
# What one scenario may take: its setup, its actions during the outage (each send
# bounded by the publish timeout of 2 s) and its catch-up after, besides the outage.
SCENARIO_SECONDS = 240.0
# The budget of the first test, whose fixture setup runs the whole outage.
SHARED_OUTAGE_TEST_SECONDS = KAFKA_STOP_SECONDS + KAFKA_START_SECONDS + SCENARIO_SECONDS + 30.0


@dataclass(frozen=True)
class OutageServers:
    """What the scenarios run against: instances A and B, and the run's settings
    for a scenario that starts a server of its own."""

    a: ServerProcess
    b: ServerProcess
    real_env: dict[str, str]


class _Rendezvous:
    """Counts the scenarios that Kafka's stop and start wait for."""

    def __init__(self, scenarios: int) -> None:
        self._not_arrived = scenarios
        self._not_left = scenarios
        self.all_arrived = asyncio.Event()
        self.all_left = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started = asyncio.Event()
        self._update()

    def arrive(self) -> None:
        self._not_arrived -= 1
        self._update()

    def leave(self) -> None:
        self._not_left -= 1
        self._update()

    def _update(self) -> None:
        if self._not_arrived <= 0:
            self.all_arrived.set()
        if self._not_left <= 0:
            self.all_left.set()


class KafkaOutage:
    """One scenario's part in the shared outage."""

    def __init__(self, rendezvous: _Rendezvous) -> None:
        self._rendezvous = rendezvous
        self._arrived = False
        self._left = False

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """Kafka is stopped inside; on leaving, waits until it has started again."""
        self._arrived = True
        self._rendezvous.arrive()
        await self._rendezvous.stopped.wait()
        try:
            yield
        finally:
            self._left = True
            self._rendezvous.leave()
        await self._rendezvous.started.wait()

    def drop_out(self) -> None:
        """The scenario has ended: the outage no longer waits for it."""
        if not self._arrived:
            self._arrived = True
            self._rendezvous.arrive()
        if not self._left:
            self._left = True
            self._rendezvous.leave()


Scenario = Callable[[OutageServers, KafkaOutage], Awaitable[None]]


async def _observe(
    scenario: Scenario, servers: OutageServers, outage: KafkaOutage
) -> BaseException | None:
    """Runs one scenario; its failure is kept for its test to raise."""
    try:
        async with asyncio.timeout(SCENARIO_SECONDS + KAFKA_STOP_SECONDS + KAFKA_START_SECONDS):
            await scenario(servers, outage)
    except Exception as failure:
        return failure
    finally:
        outage.drop_out()
    return None


async def run_shared_outage(
    scenarios: Sequence[Scenario], servers: OutageServers
) -> dict[Scenario, BaseException | None]:
    """Runs the scenarios around one outage; what each raised, or None."""
    rendezvous = _Rendezvous(len(scenarios))
    tasks = {
        scenario: asyncio.create_task(_observe(scenario, servers, KafkaOutage(rendezvous)))
        for scenario in scenarios
    }
    stopping = False
    try:
        await rendezvous.all_arrived.wait()
        stopping = True
        await asyncio.to_thread(services_script, "stop", "kafka", timeout=KAFKA_STOP_SECONDS)
        rendezvous.stopped.set()
        await rendezvous.all_left.wait()
    except BaseException:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        raise
    finally:
        if stopping:
            await asyncio.to_thread(services_script, "start", "kafka", timeout=KAFKA_START_SECONDS)
        rendezvous.stopped.set()
        rendezvous.started.set()
    return {scenario: await task for scenario, task in tasks.items()}


class SharedOutage:
    """The outcomes of the scenarios that observed the one Kafka outage."""

    def __init__(self, outcomes: dict[Scenario, BaseException | None]) -> None:
        self._outcomes = outcomes

    def check(self, scenario: Scenario) -> None:
        """Raises what the scenario raised, with its own traceback."""
        if (failure := self._outcomes[scenario]) is not None:
            raise failure
