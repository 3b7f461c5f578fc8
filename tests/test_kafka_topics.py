"""The topics Plop creates on the real Kafka take the replication settings; topics
that exist already are reported where they differ and never altered; several
bootstrap hosts work. (One broker here: the three-broker cluster is #24's.)"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from errors import ConfigError
from pubsub import SessionEnded
from pubsub.kafka import MIN_INSYNC_REPLICAS, KafkaBroker, TopicReplication, bootstrap_servers
from tests.support.services import RealServices


@asynccontextmanager
async def admin_of(real_services: RealServices) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(real_services.broker_url))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


# A setting's source in DescribeConfigs: set on the topic itself.
TOPIC_CONFIG_SOURCE = 1


async def topic_state(admin: AIOKafkaAdminClient, topic: str) -> tuple[int, int, str, bool]:
    """(partitions, copies of each, min.insync.replicas, whether that is the topic's
    own setting rather than the broker's default) as the broker has them."""
    (described,) = await admin.describe_topics([topic])
    partitions = described["partitions"]
    (response,) = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={MIN_INSYNC_REPLICAS: None})]
    )
    (resource,) = response.to_object()["resources"]
    (entry,) = resource["config_entries"]
    own = entry["config_source"] == TOPIC_CONFIG_SOURCE
    return len(partitions), len(partitions[0]["replicas"]), entry["config_value"], own


def topic_name() -> str:
    return f"plop-test-topics-{secrets.token_hex(4)}"


async def test_created_topics_take_the_replication_settings(real_services: RealServices) -> None:
    topic = topic_name()
    broker = KafkaBroker(real_services.broker_url, "topics-test", TopicReplication(1, 1))
    await broker.start({topic: 3})
    try:
        async with admin_of(real_services) as admin:
            assert await topic_state(admin, topic) == (3, 1, "1", True)
    finally:
        await broker.close()


async def test_an_existing_topic_that_differs_is_reported_and_left_alone(
    real_services: RealServices, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_name()
    async with admin_of(real_services) as admin:
        await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={MIN_INSYNC_REPLICAS: "2"})])
        while topic not in await admin.list_topics():  # noqa: ASYNC110 - creation is async
            await asyncio.sleep(0.1)
    broker = KafkaBroker(real_services.broker_url, "topics-test", TopicReplication(1, 1))
    with caplog.at_level(logging.WARNING, logger="pubsub.kafka"):
        await broker.start({topic: 4})
    await broker.close()
    reported = {
        (record.__dict__["setting"], record.__dict__["has"], record.__dict__["settings_ask"])
        for record in caplog.records
        if record.getMessage() == "Kafka topic differs from the settings; left as it is"
        and record.__dict__["topic"] == topic
    }
    assert reported == {("partitions", "2", "4"), (MIN_INSYNC_REPLICAS, "2", "1")}
    async with admin_of(real_services) as admin:
        assert await topic_state(admin, topic) == (2, 1, "2", True)  # never altered


async def test_more_copies_than_brokers_stops_the_start_with_a_clear_error(
    real_services: RealServices,
) -> None:
    broker = KafkaBroker(real_services.broker_url, "topics-test", TopicReplication(3, 2))
    with pytest.raises(ConfigError, match="refused to create topic"):
        await broker.start({topic_name(): 1})
    await broker.close()


def test_more_in_sync_copies_than_copies_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="MIN_INSYNC_REPLICAS"):
        TopicReplication(factor=1, min_insync=2)
    with pytest.raises(ConfigError):
        TopicReplication(factor=0)


async def test_several_bootstrap_hosts_carry_events(real_services: RealServices) -> None:
    host_port = bootstrap_servers(real_services.broker_url)
    port = host_port.rsplit(":", 1)[1]
    url = f"kafka://127.0.0.1:{port},localhost:{port}"  # two names of the one broker
    assert bootstrap_servers(url) == f"127.0.0.1:{port},localhost:{port}"
    topic = topic_name()
    broker = KafkaBroker(url, "topics-test")
    await broker.start({topic: 1})
    try:
        event = SessionEnded(user_id="u", session_id="s")
        async with broker.subscribe(topic) as events:
            await broker.publish(topic, "r", event)
            got = await asyncio.wait_for(anext(aiter(events)), 30)
        assert got == event
    finally:
        await broker.close()
