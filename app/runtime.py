"""One process's runtime: opens the backends, builds the services and the live
transport, runs the background work, and undoes it all on exit.

Every service exposes one pass of its periodic work; ``app.background`` repeats
each in the process's one task group: the published marks' flush, the relay (its
interval chosen by ``MessageRelay.wait_after``), the presence heartbeat and sweep,
the typing sweep, the session check, unfinished account deletions, the clean-up of
unused uploads, the push worker when a provider is configured, and once at start
the message search's index and backfill. The fan-out
consumer's pumps are its own (``live.hub``). Leaving the block cancels that
group and waits for it, bounded, so a stop always finishes even if a backend call
refuses to give way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from app.background import open_background
from auth.passwords import PasswordHashing
from backends.mongo import open_database
from backends.object_storage import storage_from_url
from backends.redis import open_redis
from live.hub import FanoutConsumer, FanoutHub
from live.room_feeds import FeedSource, RoomFeeds
from observability.health import Backends
from observability.tracing import exporting
from pubsub import ALL_TOPICS, broker_from_url
from pubsub.kafka import TopicReplication
from push.setup import providers_from_settings, push_worker
from services import Services
from services.publisher import EventPublisher
from settings import Settings
from transport.handlers import LiveTransport
from transport.socket_sessions import SocketSessions

logger = logging.getLogger(__name__)

# How long a sent message's published flag may trail its publish (see PublishedMarks).
PUBLISHED_MARKS_SECONDS = 0.5
# Room event log entries are kept days (PLOP_SYNC_RETENTION_SECONDS); deleting the
# old ones hourly keeps the log within an hour of its retention.
EVENT_LOG_CLEAN_SECONDS = 3_600.0
# How long a stop waits for the background work to finish cancelling. A cancelled
# task ends within a turn or two of the loop; one that has not after this is stuck,
# and is logged with where it waits rather than waited on, so that closing the
# broker and the stores keeps its share of the stop's budget (shutdown_seconds).
STOP_SECONDS = 1.5


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the app holds while it runs."""

    services: Services
    live: LiveTransport
    backends: Backends


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Connects every backend, starts the background work, and undoes it all on exit."""
    if embedded := settings.embedded_backends:
        logger.warning(
            "EMBEDDED MODE: %s in-process; data is NOT durable and only ONE instance "
            "is served. Point PLOP_MONGO_URL, PLOP_BROKER_URL and PLOP_REDIS_URL at "
            "real services for anything else.",
            ", ".join(embedded),
        )
    topics = {name: settings.topic(name) for name in ALL_TOPICS}
    async with AsyncExitStack() as stack:
        # First in, so last out: the spans of the whole stop are flushed too, and the
        # store's client is built knowing whether to trace its commands.
        await stack.enter_async_context(
            exporting(settings.otlp_endpoint, settings.otlp_service_name, settings.instance_id)
        )
        await stack.enter_async_context(
            open_database(
                settings.mongo_url,
                settings.backend_timeout_seconds,
                settings.mongo_max_connections,
                sharded=settings.mongo_sharded,
            )
        )
        redis = await stack.enter_async_context(
            open_redis(
                settings.redis_url, settings.backend_timeout_seconds, settings.redis_max_connections
            )
        )
        broker = broker_from_url(
            settings.broker_url,
            f"plop-{settings.instance_id}",
            TopicReplication(settings.kafka_replication_factor, settings.kafka_min_insync_replicas),
        )
        await broker.start({topic: settings.topic_partitions for topic in topics.values()})
        stack.push_async_callback(broker.close)

        hub = FanoutHub(settings.subscriber_queue_events)
        consumer = FanoutConsumer(broker, hub, topics)
        await consumer.start()
        stack.push_async_callback(consumer.stop)

        publisher = EventPublisher(broker, topics, settings.publish_timeout_seconds)
        providers = providers_from_settings(settings)
        for provider in providers.values():
            stack.push_async_callback(provider.close)
        passwords = PasswordHashing(
            settings.password_hash_threads,
            settings.password_hash_queue,
            settings.password_hash_time_cost,
            settings.password_hash_memory_kib,
        )
        stack.callback(passwords.close)
        storage = storage_from_url(
            settings.storage_url,
            settings.data_dir,
            settings.public_url or f"http://{settings.host}:{settings.port}",
            settings.storage_signing_secret,
            settings.backend_timeout_seconds,
        )
        await storage.start()
        stack.push_async_callback(storage.close)
        services = Services.build(
            settings, redis, publisher, hub, frozenset(providers), passwords, storage
        )
        feeds = RoomFeeds(FeedSource(hub, services.room_history, settings.membership_check_seconds))
        stack.push_async_callback(feeds.close)
        sockets = SocketSessions(hub, services.accounts.sessions)

        stack.push_async_callback(services.relay.marks.flush)
        background = await stack.enter_async_context(open_background(STOP_SECONDS))
        marks, presence = services.relay.marks, services.presence
        # Each first pass of these waits its interval: there is nothing to mark,
        # refresh or check before the process has served anything.
        background.every(
            "published-marks",
            marks.flush,
            PUBLISHED_MARKS_SECONDS,
            first_after=PUBLISHED_MARKS_SECONDS,
        )
        background.every(
            "presence-heartbeat",
            presence.heartbeat,
            presence.heartbeat_seconds,
            first_after=presence.heartbeat_seconds,
        )
        background.every(
            "session-check",
            sockets.check,
            settings.presence_heartbeat_seconds,
            first_after=settings.presence_heartbeat_seconds,
        )
        background.every("relay", services.relay.relay_unpublished, services.relay.wait_after)
        background.every("presence-sweep", presence.sweep, presence.sweep_seconds)
        background.every("typing-sweep", services.typing.sweep, services.typing.sweep_seconds)
        background.every(
            "account-deletions",
            services.deletions.finish_pending,
            services.deletions.interval_seconds,
        )
        background.every(
            "upload-cleanup",
            services.uploads.clean,
            services.uploads.rules.cleanup_interval_seconds,
        )
        background.every(
            "room-event-log-cleanup",
            services.event_log.clean,
            EVENT_LOG_CLEAN_SECONDS,
            first_after=EVENT_LOG_CLEAN_SECONDS,
        )
        background.once("search-start-up", services.search.start_up)
        if settings.push_worker_enabled and providers:
            worker = push_worker(
                settings,
                broker,
                redis,
                services.presence,
                services.devices,
                services.blocks,
                providers,
            )
            await background.start("push-worker", worker.run)
        yield Runtime(services, LiveTransport(feeds, sockets), Backends(redis, broker))
