"""What a test run leaves on the shared services: its Kafka topics and its database.

Each run (each pytest-xdist worker is one) writes to Kafka topics of its own prefix
and to a database of its own name (tests/conftest.py). Left behind, they pile up on a
machine that runs the suite often: a broker with thousands of partitions takes
minutes to start, which ``scripts/services.sh start`` and the Kafka outage tests wait
for. The run removes its own when it ends, once its servers have stopped.
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from pubsub.kafka import bootstrap_servers

# Removing is a few requests; a broker or database too slow for this is left alone.
REMOVE_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RunData:
    """Where one run keeps its data on the shared services."""

    topic_prefix: str
    mongo_url: str


def run_topics(topics: list[str], prefix: str) -> list[str]:
    """The topics of the run whose prefix this is (``<prefix>.<name>``), no other run's."""
    return [topic for topic in topics if topic.startswith(f"{prefix}.")]


async def _delete_topics(broker_url: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
    await admin.start()
    try:
        if topics := run_topics(await admin.list_topics(), prefix):
            await admin.delete_topics(topics)
    finally:
        await admin.close()


async def _drop_database(mongo_url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await client.drop_database(client.get_default_database().name)
    finally:
        await client.close()


async def remove_run_data(broker_url: str, data: RunData) -> None:
    """Deletes the run's topics and drops its database. A failure is a warning, not a
    failed run: the tests have all been judged by then."""
    try:
        async with asyncio.timeout(REMOVE_TIMEOUT_SECONDS):
            await _delete_topics(broker_url, data.topic_prefix)
            await _drop_database(data.mongo_url)
    except Exception as exc:
        warnings.warn(
            f"the run's topics ({data.topic_prefix}.*) or database were left behind: {exc!r}",
            stacklevel=1,
        )
