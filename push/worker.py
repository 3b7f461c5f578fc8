"""The push worker: one consumer group shared by every instance, so each message is
pushed once in total however many instances run.

For each new message it pushes to every device of every member except the sender who
is OFFLINE at that moment and has not muted the room. A push is keyed by (room, seq,
device): the key is recorded in Redis once the provider accepted it, and a
redelivered event (a
restart, a rebalance) skips the keys already recorded. The event's offset is
committed only when every push of it was sent or given up for good, so a provider
outage delays pushes but loses none. A worker killed between a provider's answer and
the record sends that one push again after the restart: no provider call can be made
atomic with a database write. That push carries the same push id (the webhook's
Plop-Push-Id header, FCM's notification tag and APNs collapse id), so the receiver
replaces the first copy instead of showing a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from backends.redis import KeyValueStore
from models import PushDeviceDoc, RoomDoc
from models.push import PushPlatform
from models.room import RoomKind
from models.time import utc_now
from observability.metrics import PUSHES, PUSHES_TOO_OLD
from pubsub import Broker, MessageAdded
from pubsub.events import MessageData
from push.providers import Notification, Outcome, PushProvider, RetryLater
from services.blocks import BlockService
from services.devices import DeviceService
from services.ids import parse_id
from services.mutes import muted_among
from services.presence import ONLINE, PresenceService
from services.shown_text import without_hidden_characters

logger = logging.getLogger(__name__)

MAX_BODY_CHARS = 200
SENT_KEY_TTL_SECONDS = 7 * 24 * 3600
SENT_KEY_PREFIX = "plop:push:sent:"
# Older messages are not pushed (``Settings.push_max_age_seconds``).
DEFAULT_MAX_AGE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float
    # A provider's Retry-After is honoured up to this: the worker waits in line, so
    # a huge value would stall every push behind it in the partition.
    max_retry_after_seconds: float

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never shorter than a capped Retry-After."""
        backoff = random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))
        return max(backoff, min(retry_after or 0.0, self.max_retry_after_seconds))


def sender_label(message: MessageData) -> str:
    """The sender as a push shows it: display name and username, "Alice (@alice)".

    Display names are free text, so two users may pick the same one; the username
    is unique, and beside the name it keeps one user from passing for another.
    """
    if not message.sender_username:
        return message.sender_display_name
    return f"{message.sender_display_name} (@{message.sender_username})"


# The body of a push of a message sent with files and no text.
FILES_ONLY_BODY = "sent a file"


def notification_for(message: MessageData, room: RoomDoc) -> Notification:
    """The push of a message. Its title is made of names, which may predate the rule
    that refuses hidden characters in them: they are dropped, so that a bidi override
    cannot turn the title around on a lock screen. The body is the message's text,
    bidi marks and all; a message of files alone (its text empty) says so."""
    sender = sender_label(message)
    title = f"{sender} in {room.title}" if room.kind is RoomKind.GROUP and room.title else sender
    return Notification(
        title=without_hidden_characters(title),
        body=message.text[:MAX_BODY_CHARS] or FILES_ONLY_BODY,
        data={"roomId": message.room_id, "seq": str(message.seq), "messageId": message.id},
    )


class PushWorker:
    """Consumes room events in the push group and pushes to offline members."""

    def __init__(
        self,
        broker: Broker,
        topic: str,
        group: str,
        redis: KeyValueStore,
        presence: PresenceService,
        devices: DeviceService,
        blocks: BlockService,
        providers: Mapping[PushPlatform, PushProvider],
        retry: RetryPolicy,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> None:
        self._broker = broker
        self._max_age = max_age
        self._topic = topic
        self._group = group
        self._redis = redis
        self._presence = presence
        self._devices = devices
        self._blocks = blocks
        self._providers = providers
        self._retry = retry

    async def run(self, joined: asyncio.Future[None]) -> None:
        """Joins the push group, sets ``joined`` (events from then on are pushed), and
        consumes until cancelled."""
        async with self._broker.consume(self._topic, self._group) as deliveries:
            joined.set_result(None)
            async for delivery in deliveries:
                if isinstance(delivery.event, MessageAdded):
                    while True:
                        try:
                            await self.handle(delivery.event.message)
                            break
                        except Exception:
                            # A backend hiccup (database, Redis): retry the same event,
                            # never skip it.
                            logger.exception("push handling failed; retrying")
                            await asyncio.sleep(1.0)
                try:
                    await delivery.commit()
                except Exception:
                    # The partition moved to another member (a rebalance): it gets the
                    # event again, and the sent keys keep it from pushing twice.
                    logger.warning("push commit failed", exc_info=True)

    async def handle(self, message: MessageData) -> None:
        """Pushes one message to the devices of the offline members who do not block the
        sender and have not muted the room (a mention pushes even so). A message older
        than the worker's ``max_age`` (a worker catching up after an outage) is not
        pushed at all."""
        if utc_now() - message.created_at > self._max_age:
            PUSHES_TOO_OLD.inc()
            return
        room = await RoomDoc.get(parse_id(message.room_id))
        if room is None:
            return
        recipients = [member for member in room.member_ids if str(member) != message.sender_id]
        # Members who muted the room get no push of it, unless the message mentions them.
        mentioned = set(message.mention_ids)
        muted = (
            await muted_among(room.id, recipients, message.created_at)
            if room.id is not None
            else set()
        )
        recipients = [
            member for member in recipients if member not in muted or str(member) in mentioned
        ]
        offline = [
            member
            for member in recipients
            if (await self._presence.current(str(member))).status != ONLINE
        ]
        devices = await self._devices.of_users(offline)
        if devices:
            # A member who blocks the sender gets no push of theirs.
            blockers = await self._blocks.blockers_of(
                parse_id(message.sender_id), (device.user_id for device in devices)
            )
            devices = [device for device in devices if device.user_id not in blockers]
        notification = notification_for(message, room)
        await asyncio.gather(
            *(self._push_once(message, device, notification) for device in devices)
        )

    async def _push_once(
        self, message: MessageData, device: PushDeviceDoc, notification: Notification
    ) -> None:
        key = f"{SENT_KEY_PREFIX}{message.room_id}:{message.seq}:{device.id}"
        if await self._redis.exists(key):
            return  # pushed before this event was redelivered
        provider = self._providers.get(device.platform)
        if provider is None:
            return
        push_id = f"{message.room_id}:{message.seq}:{device.id}"
        outcome = await self._send_with_retries(
            provider, device, dataclasses.replace(notification, push_id=push_id)
        )
        PUSHES.labels(provider=device.platform.value.lower(), result=outcome.value).inc()
        if outcome is Outcome.SENT:
            await self._redis.set(key, 1, ex=SENT_KEY_TTL_SECONDS)
        elif outcome is Outcome.DEAD_TOKEN:
            logger.info("removing a dead push token", extra={"device": str(device.id)})
            await self._devices.remove(device)

    async def _send_with_retries(
        self, provider: PushProvider, device: PushDeviceDoc, notification: Notification
    ) -> Outcome:
        for attempt in range(self._retry.max_attempts):
            try:
                return await provider.send(device, notification)
            except RetryLater as exc:
                if attempt + 1 == self._retry.max_attempts:
                    logger.warning(
                        "push given up", extra={"device": str(device.id), "reason": str(exc)}
                    )
                    return Outcome.DROPPED
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
        return Outcome.DROPPED
