"""One process's runtime: opens the backends, builds the services and the live
transport, runs the background work, and undoes it all on exit.

Everything that runs in the background lives in one task group: the fan-out
consumer's pumps are the broker's, the rest is here (published marks, the relay,
presence heartbeat and sweep, the typing sweep, session checks, unfinished account
deletions, the push worker, and once at start the message search's index and
backfill). Leaving the block cancels that group and waits for it, bounded, so a stop
always finishes even if a backend call refuses to give way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from auth.passwords import PasswordHashing
from backends.mongo import open_database
from backends.redis import open_redis
from observability.health import Backends
from pubsub import ALL_TOPICS, broker_from_url
from push.setup import providers_from_settings, push_worker
from services import Services
from services.events import EventPublisher
from services.fanout import FanoutConsumer, FanoutHub
from settings import Settings
from transport.feeds import RoomFeeds
from transport.handlers import LiveTransport
from transport.sessions import SocketSessions

logger = logging.getLogger(__name__)

# How long a sent message's published flag may trail its publish (see PublishedMarks).
PUBLISHED_MARKS_SECONDS = 0.5
# How long a stop waits for the background work to finish cancelling.
STOP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the app holds while it runs."""

    services: Services
    live: LiveTransport
    backends: Backends


class Background:
    """The process's background tasks; ``close`` cancels them and waits, bounded."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.create_task(self._guarded(name, work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def adopt(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background task failed", extra={"task": name})

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
        for task in stuck:
            logger.error("background task did not stop in time", extra={"task": task.get_name()})


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
        await stack.enter_async_context(
            open_database(
                settings.mongo_url,
                settings.backend_timeout_seconds,
                settings.mongo_max_connections,
            )
        )
        redis = await stack.enter_async_context(
            open_redis(
                settings.redis_url, settings.backend_timeout_seconds, settings.redis_max_connections
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
        services = Services.build(settings, redis, publisher, hub, frozenset(providers), passwords)
        feeds = RoomFeeds(services.streams)
        stack.push_async_callback(feeds.close)
        sockets = SocketSessions(hub, services.accounts.sessions)

        stack.push_async_callback(services.relay.marks.flush)
        background = Background()
        stack.push_async_callback(background.close)
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            "published-marks": lambda: services.relay.marks.flush_forever(PUBLISHED_MARKS_SECONDS),
            "relay": services.relay.relay_forever,
            "presence-heartbeat": services.presence.heartbeat_forever,
            "presence-sweep": services.presence.sweep_forever,
            "typing-sweep": services.typing.sweep_forever,
            "session-check": lambda: sockets.check_forever(settings.presence_heartbeat_seconds),
            "account-deletions": services.deletions.finish_forever,
            "search-backfill": services.search.start_up,
        }
        for name, job in jobs.items():
            background.run(name, job)  # type: ignore[arg-type]
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
            background.adopt(await worker.start())
        yield Runtime(services, LiveTransport(feeds, sockets), Backends(redis, broker))
