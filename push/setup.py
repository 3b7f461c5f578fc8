"""Builds the push providers and the worker from settings."""

from __future__ import annotations

from datetime import timedelta

from backends.redis import KeyValueStore
from models.push import PushPlatform
from pubsub import ROOM_EVENTS, Broker
from push.providers import FcmProvider, PushProvider, WebhookProvider
from push.worker import PushWorker, RetryPolicy
from services.blocks import BlockService
from services.devices import DeviceService
from services.presence import PresenceService
from settings import Settings


def providers_from_settings(settings: Settings) -> dict[PushPlatform, PushProvider]:
    """The providers this deployment is configured for (none: no pushes)."""
    providers: dict[PushPlatform, PushProvider] = {}
    if settings.push_fcm_service_account_file:
        providers[PushPlatform.FCM] = FcmProvider(
            settings.push_fcm_service_account_file,
            settings.push_fcm_base_url,
            settings.push_timeout_seconds,
        )
    if settings.push_webhook_url and settings.push_webhook_secret:
        providers[PushPlatform.WEBHOOK] = WebhookProvider(
            settings.push_webhook_url, settings.push_webhook_secret, settings.push_timeout_seconds
        )
    return providers


def push_worker(
    settings: Settings,
    broker: Broker,
    redis: KeyValueStore,
    presence: PresenceService,
    devices: DeviceService,
    blocks: BlockService,
    providers: dict[PushPlatform, PushProvider],
) -> PushWorker:
    return PushWorker(
        broker,
        topic=settings.topic(ROOM_EVENTS),
        group=settings.push_group or settings.topic("push"),
        redis=redis,
        presence=presence,
        devices=devices,
        blocks=blocks,
        providers=providers,
        retry=RetryPolicy(
            max_attempts=settings.push_max_attempts,
            base_seconds=settings.push_backoff_base_seconds,
            max_seconds=settings.push_backoff_max_seconds,
            max_retry_after_seconds=settings.push_retry_after_max_seconds,
        ),
        max_age=timedelta(seconds=settings.push_max_age_seconds),
    )
