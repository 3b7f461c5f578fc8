"""Kafka backend (aiokafka).

Broadcast without consumer groups: each subscription assigns itself every partition
of the topic and starts at the end. Every instance must see every room event, and a
consumer group per instance would leave a group behind in the broker each time an
instance stops for good. Nothing is lost by starting at the end: a subscriber that
joins later reads what came before from the database (``afterSeq``), and a message
whose publish failed is republished by the relay.

Topics Plop creates get ``TopicReplication``: one copy of each partition by default
(one broker), three with ``min.insync.replicas`` 2 on a production cluster. A topic
that already exists is never altered: where its partitions, copies or
``min.insync.replicas`` differ from the settings, the start logs a warning naming
what it has and what the settings ask, for the operator to decide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from errors import BackendUnreachable, ConfigError, describe
from observability import tracing
from observability.metrics import (
    CONSUMED_DECODED,
    CONSUMED_DROPPED,
    KAFKA_CONSUMER_LAG,
    KAFKA_RECORDS_CONSUMED,
)
from pubsub.events import Delivery, Event, KeyFilter, decode_event, encode_event

logger = logging.getLogger(__name__)

# Kafka's error code for "topic already exists" in a CreateTopics response.
_TOPIC_ALREADY_EXISTS = 36
_METADATA_WAIT_SECONDS = 30.0
# The lag gauge is refreshed at most this often per consumer: a busy consumer reads
# many batches a second, and the gauge is scraped every few seconds at best.
LAG_REFRESH_SECONDS = 1.0


# The topic setting that decides how many copies must have a write before it counts.
MIN_INSYNC_REPLICAS = "min.insync.replicas"


@dataclass(frozen=True)
class TopicReplication:
    """How the topics Plop creates are copied: ``factor`` copies of each partition, and
    ``min_insync`` of them holding a write before it counts (None: the broker's own
    default). The producer writes with ``acks=all``, so both decide what a broker's
    loss can cost."""

    factor: int = 1
    min_insync: int | None = None

    def __post_init__(self) -> None:
        if self.factor < 1 or (self.min_insync is not None and self.min_insync < 1):
            raise ConfigError("Kafka replication settings must be 1 or more")
        if self.min_insync is not None and self.min_insync > self.factor:
            # Every write would be refused (NOT_ENOUGH_REPLICAS): say so at start.
            raise ConfigError(
                f"PLOP_KAFKA_MIN_INSYNC_REPLICAS ({self.min_insync}) is more than "
                f"PLOP_KAFKA_REPLICATION_FACTOR ({self.factor})"
            )

    def topic_configs(self) -> dict[str, str]:
        return {} if self.min_insync is None else {MIN_INSYNC_REPLICAS: str(self.min_insync)}


def bootstrap_servers(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` -> ``h1:9092,h2:9092``."""
    servers = urlsplit(url).netloc
    if not servers:
        raise ConfigError(f"PLOP_BROKER_URL names no Kafka host: {url!r}")
    return servers


class KafkaBroker:
    """Publishes with an idempotent producer; subscribes by assigning all partitions."""

    def __init__(
        self, url: str, client_id: str, replication: TopicReplication | None = None
    ) -> None:
        self._url = url
        self._servers = bootstrap_servers(url)
        self._client_id = client_id
        self._replication = replication or TopicReplication()
        self._producer: AIOKafkaProducer | None = None

    async def start(self, topics: dict[str, int]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )
        try:
            await self._create_topics(topics)
            await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            with suppress(Exception):
                await producer.stop()
            raise BackendUnreachable("broker", self._url, describe(exc)) from exc
        self._producer = producer

    async def ping(self) -> None:
        """A metadata request for no topic to one of the brokers the producer knows."""
        if self._producer is None:
            raise RuntimeError("KafkaBroker.ping before start")
        client = self._producer.client
        node = client.get_random_node()
        if node is None:
            raise KafkaError("no Kafka broker is known")
        await client.send(node, MetadataRequest([]))

    async def _create_topics(self, topics: dict[str, int]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._servers, client_id=self._client_id)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=self._replication.factor,
                    topic_configs=self._replication.topic_configs(),
                )
                for name, partitions in topics.items()
                if name not in existing
            ]
            await self._report_differences(
                admin, {name: wanted for name, wanted in topics.items() if name in existing}
            )
            if missing:
                response = await admin.create_topics(missing)
                for name, code, *_ in response.topic_errors:
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise ConfigError(f"Kafka refused to create topic {name!r} (error {code})")
            # Creation is asynchronous in the cluster: wait until every topic is visible.
            async with asyncio.timeout(_METADATA_WAIT_SECONDS):
                # Polls the cluster: there is no event to await for topic creation.
                while not set(topics) <= set(await admin.list_topics()):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def _report_differences(
        self, admin: AIOKafkaAdminClient, topics: dict[str, int]
    ) -> list[tuple[str, str, str, str]]:
        """Logs (and returns) each setting of an existing topic that differs from what
        Plop would create: (topic, setting, what it has, what the settings ask)."""
        if not topics:
            return []
        found: list[tuple[str, str, str, str]] = []
        for described in await admin.describe_topics(list(topics)):
            name, partitions = described["topic"], described["partitions"]
            copies = len(partitions[0]["replicas"]) if partitions else 0
            if len(partitions) != topics[name]:
                found.append((name, "partitions", str(len(partitions)), str(topics[name])))
            if copies != self._replication.factor:
                found.append(
                    (name, "replication factor", str(copies), str(self._replication.factor))
                )
        if self._replication.min_insync is not None:
            wanted = str(self._replication.min_insync)
            resources = [
                ConfigResource(ConfigResourceType.TOPIC, name, configs={MIN_INSYNC_REPLICAS: None})
                for name in topics
            ]
            for response in await admin.describe_configs(resources):
                for resource in response.to_object()["resources"]:
                    for entry in resource["config_entries"]:
                        if (
                            entry["config_names"] == MIN_INSYNC_REPLICAS
                            and entry["config_value"] != wanted
                        ):
                            found.append(
                                (
                                    resource["resource_name"],
                                    MIN_INSYNC_REPLICAS,
                                    entry["config_value"],
                                    wanted,
                                )
                            )
        for topic, setting, has, wants in found:
            logger.warning(
                "Kafka topic differs from the settings; left as it is",
                extra={"topic": topic, "setting": setting, "has": has, "settings_ask": wants},
            )
        return found

    async def publish(self, topic: str, key: str, event: Event) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBroker.publish before start")
        if not tracing.active:
            await self._producer.send_and_wait(topic, encode_event(event), key=key.encode())
            return
        # The record's headers carry the trace to every instance that consumes it.
        with tracing.publishing(topic, key, event.type, "kafka") as headers:
            await self._producer.send_and_wait(
                topic, encode_event(event), key=key.encode(), headers=headers
            )

    @asynccontextmanager
    async def subscribe(
        self, topic: str, wanted: KeyFilter | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            partitions = await self._partitions(topic)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            # Resolve the positions now, so that every event published after this
            # block was entered is delivered.
            for partition in partitions:
                await consumer.position(partition)

            lag = ConsumerLag(consumer, topic, "broadcast")
            # Counted once per batch, not per record: a dropped record costs a dict
            # lookup, and a counter's increment would cost as much again.
            dropped_count = KAFKA_RECORDS_CONSUMED.labels(topic=topic, outcome=CONSUMED_DROPPED)
            decoded_count = KAFKA_RECORDS_CONSUMED.labels(topic=topic, outcome=CONSUMED_DECODED)

            async def events() -> AsyncIterator[Event]:
                while True:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                    await lag.refresh()
                    for records in batches.values():
                        dropped = 0
                        for record in records:
                            if record.value is None:
                                continue
                            # Keyed by room or user: one dict lookup instead of a decode
                            # for an event nobody follows on this instance.
                            if (
                                wanted is not None
                                and record.key is not None
                                and not wanted(record.key.decode())
                            ):
                                dropped += 1
                                continue
                            if event := decode_event(record.value):
                                # Only for decoded events: the key drop above stays
                                # the cost of a dict lookup.
                                if tracing.active:
                                    tracing.received_headers(record.headers)
                                decoded_count.inc()
                                yield event
                        if dropped:
                            dropped_count.inc(dropped)

            yield events()
        finally:
            with suppress(Exception):
                await consumer.stop()

    @asynccontextmanager
    async def consume(self, topic: str, group: str) -> AsyncIterator[AsyncIterator[Delivery]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        consumer.subscribe([topic], listener=_PinNewPartitions(consumer))
        await consumer.start()
        try:
            # Joined once partitions are assigned: from then on nothing is skipped.
            async with asyncio.timeout(_METADATA_WAIT_SECONDS):
                while not consumer.assignment():  # noqa: ASYNC110 - polls the group join
                    await asyncio.sleep(0.05)

            lag = ConsumerLag(consumer, topic, "group")

            async def deliveries() -> AsyncIterator[Delivery]:
                async for record in consumer:
                    await lag.refresh()
                    partition = TopicPartition(record.topic, record.partition)
                    offset = record.offset + 1

                    async def commit(at: TopicPartition = partition, to: int = offset) -> None:
                        await consumer.commit({at: to})

                    if record.value is not None and (event := decode_event(record.value)):
                        yield Delivery(event, commit)
                    else:
                        await commit()

            yield deliveries()
        finally:
            with suppress(Exception):
                await consumer.stop()

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        """Every partition of the topic (the producer's metadata waits for the topic)."""
        if self._producer is None:
            raise RuntimeError("KafkaBroker.subscribe before start")
        async with asyncio.timeout(_METADATA_WAIT_SECONDS):
            numbers = await self._producer.partitions_for(topic)
        return [TopicPartition(topic, number) for number in sorted(numbers)]

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class ConsumerLag:
    """Sets ``plop_kafka_consumer_lag`` for one consumer: the records it has yet to read.

    aiokafka learns a partition's highwater (the offset the next record produced will
    get) from each fetch response, and ``position`` is the offset of the next record
    this consumer will read, so their difference is the lag; a partition fetched
    from for the first time has no highwater yet and counts as 0.
    """

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, kind: str) -> None:
        self._consumer = consumer
        self._gauge = KAFKA_CONSUMER_LAG.labels(topic=topic, consumer=kind)
        self._due = 0.0

    async def refresh(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + LAG_REFRESH_SECONDS
        # Highwaters first, without awaiting: a rebalance may change the assignment
        # while positions are awaited.
        highwaters = {
            partition: highwater
            for partition in self._consumer.assignment()
            if (highwater := self._consumer.highwater(partition)) is not None
        }
        lag = 0
        try:
            for partition, highwater in highwaters.items():
                lag += max(0, highwater - await self._consumer.position(partition))
        except KafkaError:
            return  # the partition was revoked meanwhile; the next refresh counts again
        self._gauge.set(lag)


class _PinNewPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the starting position of a partition the group never committed.

    With no committed offset a member starts at the end ("latest"); if the partition
    moved to another member before the first commit, that member would start at a
    later end and skip what came between. Committing the position at first
    assignment pins where the group starts.
    """

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        fresh = {}
        for partition in assigned:
            if await self._consumer.committed(partition) is None:
                fresh[partition] = await self._consumer.position(partition)
        if fresh:
            await self._consumer.commit(fresh)
