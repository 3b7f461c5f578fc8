"""Session fixtures: the real services, two real server instances, and the embedded one.

Services and servers start once per test run; tests isolate themselves by creating
fresh users and rooms. The run gets its own database and topic prefix, so runs do
not see each other's data.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from devtools.processes import LOAD_TEST_LIMITS
from tests.support.file_order import longest_files_first
from tests.support.kafka_outage import OutageServers, Scenario, SharedOutage, run_shared_outage
from tests.support.run_leftovers import RunData, remove_run_data
from tests.support.server import ServerProcess
from tests.support.services import RealServices, start_real_services

RUN_ID = secrets.token_hex(4)
# pytest-xdist runs the suite in several worker processes, each a run of its own (its
# own RUN_ID, servers, database and topics); they share the services.
WORKER_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# The same for every worker of one run: the workers' Redis databases differ by index.
RUN_SEED = int(os.environ.get("PYTEST_XDIST_TESTRUNUID", RUN_ID)[:8], 16)
# Presence timings of the real-service servers, short so that tests of expiry are quick.
PRESENCE_TIMING = {
    "PLOP_PRESENCE_TTL_SECONDS": "4",
    "PLOP_PRESENCE_HEARTBEAT_SECONDS": "1",
    "PLOP_PRESENCE_GRACE_SECONDS": "1.5",
    "PLOP_PRESENCE_SWEEP_SECONDS": "0.5",
}


# Redis databases the runs choose from (16 by default; database 0 is left to others).
REDIS_DATABASES = 16


def redis_url_for_run(url: str) -> str:
    """A Redis database of the run's own choosing on the shared Redis.

    Presence keeps one due set per database, and any instance on it sweeps it: a run
    sharing the database with another run (or a benchmark) has its users swept by
    the other run's instances, whose OFFLINE goes to the other run's topics.
    """
    base, _, _ = url.rpartition("/")
    return f"{base}/{1 + (RUN_SEED + WORKER_INDEX) % (REDIS_DATABASES - 1)}"


@pytest.fixture(scope="session")
def real_services() -> RealServices:
    """Redis, Kafka, FerretDB and versitygw, installed and started by scripts/services.sh."""
    return start_real_services()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def run_data(real_services: RealServices) -> AsyncIterator[RunData]:
    """The run's topic prefix and database, removed when the run ends (after every
    server that used them has stopped: those all depend on this through ``real_env``)."""
    data = RunData(f"plop-test-{RUN_ID}", real_services.mongo_url_for(f"plop_test_{RUN_ID}"))
    yield data
    await remove_run_data(real_services.broker_url, data)


@pytest.fixture(scope="session")
def real_env(real_services: RealServices, run_data: RunData) -> dict[str, str]:
    """Settings that point a server at the real services, for this run."""
    return {
        "PLOP_MONGO_URL": run_data.mongo_url,
        "PLOP_BROKER_URL": real_services.broker_url,
        "PLOP_REDIS_URL": redis_url_for_run(real_services.redis_url),
        "PLOP_STORAGE_URL": real_services.storage_url,
        "PLOP_TOPIC_PREFIX": run_data.topic_prefix,
        "PLOP_RELAY_INTERVAL_SECONDS": "0.5",
        "PLOP_RELAY_GRACE_SECONDS": "1",
        "PLOP_RELAY_IDLE_INTERVAL_SECONDS": "2",
        "PLOP_PUBLISH_TIMEOUT_SECONDS": "2",
        **PRESENCE_TIMING,
        **LOAD_TEST_LIMITS,
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server_a(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """Instance A against the real services."""
    server = ServerProcess(f"{RUN_ID}-a", {**real_env, "PLOP_INSTANCE_ID": "a"})
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server_b(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """Instance B, sharing the services with A."""
    server = ServerProcess(f"{RUN_ID}-b", {**real_env, "PLOP_INSTANCE_ID": "b"})
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedded_server() -> AsyncIterator[ServerProcess]:
    """``plop serve`` on the embedded default, with the suite's raised abuse limits."""
    server = ServerProcess(f"{RUN_ID}-embedded", LOAD_TEST_LIMITS)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["real", "embedded"])
def any_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Each test using it runs against the real services and the embedded default."""
    fixture = "server_a" if request.param == "real" else "embedded_server"
    yield request.getfixturevalue(fixture)


def outage_scenario(item: pytest.Item) -> Scenario | None:
    """The scenario a ``restarts_kafka`` test observes the shared outage with."""
    marker = item.get_closest_marker("restarts_kafka")
    scenario: Scenario | None = marker.kwargs.get("scenario") if marker else None
    return scenario


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_outage(
    request: pytest.FixtureRequest,
    server_a: ServerProcess,
    server_b: ServerProcess,
    real_env: dict[str, str],
) -> SharedOutage:
    """One stop and start of the shared Kafka for all selected ``restarts_kafka``
    tests (tests/support/kafka_outage.py): their scenarios run side by side."""
    scenarios = list(
        dict.fromkeys(
            scenario
            for item in request.session.items
            if (scenario := outage_scenario(item)) is not None
        )
    )
    outcomes = await run_shared_outage(scenarios, OutageServers(server_a, server_b, real_env))
    return SharedOutage(outcomes)


@pytest.hookimpl(trylast=True)  # after -m and -k deselected what they do
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that observe the shared Kafka outage run last: a broker that has just
    come back is slow for a while, and no other test should wait on it. Beside another
    worker's tests they cannot run at all: scripts/test.sh runs them on their own."""
    if "PYTEST_XDIST_WORKER" in os.environ and any(
        item.get_closest_marker("restarts_kafka") for item in items
    ):
        raise pytest.UsageError(
            "restarts_kafka tests stop the shared Kafka under the other workers' tests: "
            'run them without -n, or deselect them with -m "not restarts_kafka"'
        )
    if "PYTEST_XDIST_WORKER" in os.environ:
        longest_files_first(items)  # the workers' queue: tests/support/file_order.py
    items.sort(key=lambda item: item.get_closest_marker("restarts_kafka") is not None)
