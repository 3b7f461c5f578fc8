"""Push providers behind one small interface.

``send`` returns an ``Outcome`` (SENT, DEAD_TOKEN: remove the device, DROPPED: a
client error not worth retrying) or raises ``RetryLater`` for a 5xx, a 429 or a
network error, with the server's Retry-After when it gave one. Retrying is the
worker's job, so every provider gets the same backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import httpx

from errors import ConfigError
from models import PushDeviceDoc
from push.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

logger = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
PUSH_ID_HEADER = "Plop-Push-Id"


class Outcome(Enum):
    SENT = "sent"
    DEAD_TOKEN = "dead_token"
    DROPPED = "dropped"


class RetryLater(Exception):
    """A transient failure; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Notification:
    title: str
    body: str
    data: dict[str, str]
    # Names this push (room, seq, device). A worker that dies after the provider
    # accepted a push but before recording it sends it again after a restart; the
    # id lets the receiver (the webhook's Plop-Push-Id, FCM's notification tag)
    # replace the first copy instead of showing a second one.
    push_id: str = ""


class PushProvider(Protocol):
    async def send(self, device: PushDeviceDoc, notification: Notification) -> Outcome: ...

    async def close(self) -> None: ...


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After seconds, if the header is a plain number (ASCII digits, one dot).

    ``isdigit`` alone would pass "²", which ``float`` refuses. An HTTP-date is not
    read: the backoff stands in for it. The worker caps what this returns.
    """
    value = response.headers.get("retry-after", "").strip()
    if not (value.isascii() and value.replace(".", "", 1).isdigit()):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None


def classify(response: httpx.Response, dead_statuses: tuple[int, ...]) -> Outcome:
    """What an HTTP answer means for a push; raises RetryLater for 429 and 5xx."""
    if response.status_code < 300:
        return Outcome.SENT
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryLater(f"HTTP {response.status_code}", _retry_after(response))
    if response.status_code in dead_statuses:
        return Outcome.DEAD_TOKEN
    logger.warning("push dropped", extra={"status": response.status_code})
    return Outcome.DROPPED


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.post(url, **kwargs)
    except httpx.TransportError as exc:
        raise RetryLater(f"network error: {type(exc).__name__}") from exc


class WebhookProvider:
    """POSTs a signed JSON notification to the deployment's webhook URL."""

    def __init__(self, url: str, secret: str, timeout_seconds: float) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def send(self, device: PushDeviceDoc, notification: Notification) -> Outcome:
        body = json.dumps(
            {
                "deviceToken": device.token,
                "title": notification.title,
                "body": notification.body,
                "data": notification.data,
            },
            separators=(",", ":"),
        ).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
            PUSH_ID_HEADER: notification.push_id,
        }
        response = await _post(self._client, self._url, content=body, headers=headers)
        return classify(response, dead_statuses=(410,))

    async def close(self) -> None:
        await self._client.aclose()


class FcmProvider:
    """FCM HTTP v1: OAuth2 access token from a service account, cached until it expires."""

    def __init__(self, service_account_file: str, base_url: str, timeout_seconds: float) -> None:
        from google.oauth2 import service_account

        try:
            info = json.loads(Path(service_account_file).read_text())
            self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[FCM_SCOPE]
            )
            self._project_id: str = info["project_id"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"PLOP_PUSH_FCM_SERVICE_ACCOUNT_FILE is not a usable service account: {exc}"
            ) from exc
        self._base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_seconds)
        self._token_lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._token_lock:
            if not self._credentials.valid:
                from google.auth.exceptions import RefreshError, TransportError
                from google.auth.transport.requests import Request

                try:
                    # google-auth refreshes synchronously (requests): keep it off the loop.
                    await asyncio.to_thread(self._credentials.refresh, Request())
                except (TransportError, RefreshError) as exc:
                    # Unreachable, or refused (a revoked key): retried, then given up on.
                    logger.warning("FCM access token refresh failed", extra={"error": str(exc)})
                    raise RetryLater("FCM access token unavailable") from exc
            token: str = self._credentials.token
            return token

    async def send(self, device: PushDeviceDoc, notification: Notification) -> Outcome:
        url = f"{self._base_url}/v1/projects/{self._project_id}/messages:send"
        message = {
            "message": {
                "token": device.token,
                "notification": {"title": notification.title, "body": notification.body},
                "data": notification.data,
                "android": {"notification": {"tag": notification.push_id}},
                "apns": {"headers": {"apns-collapse-id": notification.push_id[:64]}},
            }
        }
        headers = {"authorization": f"Bearer {await self._access_token()}"}
        response = await _post(self._client, url, json=message, headers=headers)
        if response.status_code == 400 and _fcm_error_code(response) == "UNREGISTERED":
            return Outcome.DEAD_TOKEN
        return classify(response, dead_statuses=(404,))

    async def close(self) -> None:
        await self._client.aclose()


def _fcm_error_code(response: httpx.Response) -> str | None:
    try:
        details = response.json()["error"].get("details", [])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    for detail in details:
        if isinstance(detail, dict) and "errorCode" in detail:
            return str(detail["errorCode"])
    return None
