"""``Services``: every backend and service of one process, opened and closed together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from auth.sessions import SessionStore
from backends.mongo import open_database
from backends.redis import open_redis
from pubsub import ALL_TOPICS, Broker, broker_from_url
from push.setup import providers_from_settings, push_worker
from services.accounts import AccountService
from services.blocks import BlockService
from services.devices import DeviceService
from services.events import EventPublisher
from services.fanout import FanoutConsumer, FanoutHub
from services.friends import FriendService
from services.messages import MessageService
from services.presence import PresenceService
from services.room_feeds import RoomFeeds
from services.rooms import RoomService
from services.streams import StreamService
from settings import Settings

logger = logging.getLogger(__name__)

# How long a sent message's published flag may trail its publish (see PublishedMarks).
PUBLISHED_MARKS_SECONDS = 0.5


@dataclass
class Services:
    """What resolvers reach through ``info.context.services``."""

    settings: Settings
    redis: Redis
    broker: Broker
    hub: FanoutHub
    accounts: AccountService
    rooms: RoomService
    messages: MessageService
    streams: StreamService
    room_feeds: RoomFeeds
    friends: FriendService
    presence: PresenceService
    devices: DeviceService
    blocks: BlockService

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Services]:
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
            await stack.enter_async_context(
                open_database(settings.mongo_url, settings.backend_timeout_seconds)
            )
            redis = await stack.enter_async_context(
                open_redis(
                    settings.redis_url,
                    settings.backend_timeout_seconds,
                    settings.redis_max_connections,
                )
            )
            broker = broker_from_url(settings.broker_url, f"plop-{settings.instance_id}")
            await broker.start({topic: settings.topic_partitions for topic in topics.values()})
            stack.push_async_callback(broker.close)

            hub = FanoutHub(settings.subscriber_queue_events)
            consumer = FanoutConsumer(broker, hub, topics)
            await consumer.start()
            stack.push_async_callback(consumer.stop)

            publisher = EventPublisher(broker, topics, settings.publish_timeout_seconds)
            accounts = AccountService(SessionStore(redis, settings.session_ttl_seconds))
            rooms = RoomService(publisher, settings.max_group_members)
            messages = MessageService(
                publisher, rooms, settings.max_message_chars, settings.max_client_id_chars
            )
            friends = FriendService(publisher)
            blocks = BlockService(redis, friends)
            presence = PresenceService(
                redis,
                publisher,
                hub,
                friends,
                ttl_seconds=settings.presence_ttl_seconds,
                heartbeat_seconds=settings.presence_heartbeat_seconds,
                grace_seconds=settings.presence_grace_seconds,
                sweep_seconds=settings.presence_sweep_seconds,
            )
            providers = providers_from_settings(settings)
            for provider in providers.values():
                stack.push_async_callback(provider.close)
            devices = DeviceService(frozenset(providers))
            streams = StreamService(hub, messages, accounts)
            room_feeds = RoomFeeds(hub, messages, streams)
            stack.push_async_callback(room_feeds.close)
            services = cls(
                settings=settings,
                redis=redis,
                broker=broker,
                hub=hub,
                accounts=accounts,
                rooms=rooms,
                messages=messages,
                streams=streams,
                room_feeds=room_feeds,
                friends=friends,
                presence=presence,
                devices=devices,
                blocks=blocks,
            )
            stack.push_async_callback(messages.published_marks.flush)
            for background in (
                messages.published_marks.flush_forever(PUBLISHED_MARKS_SECONDS),
                services._relay_forever(),
                presence.heartbeat_forever(),
                presence.sweep_forever(),
            ):
                stack.push_async_callback(_cancel, asyncio.create_task(background))
            if settings.push_worker_enabled and providers:
                worker = push_worker(settings, broker, redis, presence, devices, blocks, providers)
                stack.push_async_callback(_cancel, await worker.start())
            yield services

    async def _relay_forever(self) -> None:
        """Publishes what failed sends left behind, until the process stops.

        Looks often while this instance's publishes fail (until the grace after the
        last failure has passed and a pass found nothing), seldom otherwise.
        """
        settings = self.settings
        grace = timedelta(seconds=settings.relay_grace_seconds)
        # A failure keeps the relay looking often until its message is surely taken.
        busy_for = settings.relay_grace_seconds + 2 * settings.relay_interval_seconds
        while True:
            try:
                relayed = await self.messages.relay_unpublished(grace)
            except Exception:
                logger.exception("relay pass failed; retrying")
                relayed = 1
            recent_failure = time.monotonic() - self.messages.last_publish_failure < busy_for
            await asyncio.sleep(
                settings.relay_interval_seconds
                if relayed or recent_failure
                else settings.relay_idle_interval_seconds
            )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
