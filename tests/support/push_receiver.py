"""A local stand-in for FCM HTTP v1 (token and send routes) and a webhook receiver.

It checks what a real receiver checks: the OAuth2 JWT assertion is signed by the
service account's key, sends carry the access token it issued, and webhooks carry a
valid ``Plop-Signature``, checked as the README documents it (with hmac here, not
with Plop's own code). Each test scripts per device token what the next answers are
(e.g. 503, 503, then the default 200), reads back what was delivered, and when each
attempt arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from push.providers import FCM_SCOPE
from tests.support.server import ServerProcess, free_port

PROJECT = "plop-test-project"
CLIENT_EMAIL = f"plop@{PROJECT}.iam.gserviceaccount.com"
# Google's token endpoint checks that the assertion names it as the audience.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
# The webhook as the README documents it, written out rather than imported, so that
# a change of Plop's headers or signature breaks the receivers' contract visibly.
TIMESTAMP_HEADER = "Plop-Timestamp"
SIGNATURE_HEADER = "Plop-Signature"
PUSH_ID_HEADER = "Plop-Push-Id"
MAX_SKEW_SECONDS = 300
# A scripted answer: status and JSON body, and optionally response headers.
Answer = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]


def readme_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256(secret, ``<timestamp>`` + ``.`` + raw body bytes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_as_documented(secret: str, timestamp: str, header: str, body: bytes, now: float) -> bool:
    """What a receiver following the README accepts: a fresh timestamp, the HMAC."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(readme_signature(secret, timestamp, body), header)


@dataclass
class Received:
    """One accepted push."""

    platform: str
    token: str
    title: str
    body: str
    data: dict[str, str]
    push_id: str
    # Webhooks only: the request as received, for checks of the wire format.
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = b""


@dataclass
class PushReceiver:
    port: int
    service_account_file: Path
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    attempt_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    scripted: dict[str, list[Answer]] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, token: str, *answers: Answer) -> None:
        """The next answers for this token, before the default 200: a status, a JSON
        body, and optionally headers (a Retry-After, say)."""
        self.scripted[token] = list(answers)

    def for_token(self, token: str) -> list[Received]:
        return [push for push in self.received if push.token == token]

    async def wait_for(self, count: int, *tokens: str, within: float = 30.0) -> list[Received]:
        """Waits until ``count`` pushes reached these tokens; returns them."""
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(
                lambda: len([p for p in self.received if p.token in tokens]) >= count
            )
        return [p for p in self.received if p.token in tokens]

    async def wait_for_ids(self, count: int, *tokens: str, within: float = 30.0) -> list[Received]:
        """Waits until pushes with ``count`` distinct push ids reached these tokens."""
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(
                lambda: len({p.push_id for p in self.received if p.token in tokens}) >= count
            )
        return [p for p in self.received if p.token in tokens]

    async def _accept(self, push: Received) -> Response:
        self.attempts[push.token] += 1
        self.attempt_times[push.token].append(time.monotonic())
        answers = self.scripted.get(push.token)
        if answers:
            status, body, *headers = answers.pop(0)
            return JSONResponse(body, status_code=status, headers=headers[0] if headers else None)
        async with self.arrived:
            self.received.append(push)
            self.arrived.notify_all()
        return JSONResponse({"name": f"projects/{PROJECT}/messages/{secrets.token_hex(4)}"})


def _make_app(receiver: PushReceiver, public_key_pem: bytes) -> Starlette:
    issued: set[str] = set()

    async def token(request: Request) -> Response:
        form = await request.form()
        assertion = str(form.get("assertion", ""))
        try:
            claims = jwt.decode(
                assertion, public_key_pem, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "detail": str(exc)}, status_code=400)
        if claims.get("iss") != CLIENT_EMAIL or FCM_SCOPE not in claims.get("scope", ""):
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        access = secrets.token_urlsafe(16)
        issued.add(access)
        return JSONResponse({"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

    async def fcm_send(request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in issued:
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        message = (await request.json())["message"]
        return await receiver._accept(
            Received(
                "FCM",
                message["token"],
                message["notification"]["title"],
                message["notification"]["body"],
                message["data"],
                message["android"]["notification"]["tag"],
            )
        )

    async def webhook(request: Request) -> Response:
        body = await request.body()
        if not signed_as_documented(
            WEBHOOK_SECRET,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            body,
            time.time(),
        ):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = json.loads(body)
        return await receiver._accept(
            Received(
                "WEBHOOK",
                payload["deviceToken"],
                payload["title"],
                payload["body"],
                payload["data"],
                request.headers.get(PUSH_ID_HEADER, ""),
                dict(request.headers),
                body,
            )
        )

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route(f"/v1/projects/{PROJECT}/messages:send", fcm_send, methods=["POST"]),
            Route("/webhook", webhook, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def running_push_receiver(directory: Path) -> AsyncIterator[PushReceiver]:
    """Serves the stand-in on a loopback port for the block's life."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    port = free_port()
    account = directory / "service-account.json"
    account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "test-key",
                "private_key": private_pem.decode(),
                "client_email": CLIENT_EMAIL,
                "client_id": "1",
                "token_uri": f"http://127.0.0.1:{port}/token",
            }
        )
    )
    receiver = PushReceiver(port=port, service_account_file=account)
    server = uvicorn.Server(
        uvicorn.Config(
            _make_app(receiver, public_pem), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no readiness event
            await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def webhook_pusher(
    name: str, env: dict[str, str], receiver: PushReceiver
) -> AsyncIterator[ServerProcess]:
    """One instance with these settings running the push worker, pushing to the
    receiver's webhook only."""
    server = ServerProcess(
        name,
        {
            **env,
            "PLOP_INSTANCE_ID": name,
            # A group of its own starts at the newest events: the run's shared group
            # would first work through every message sent since its last worker left.
            "PLOP_PUSH_GROUP": f"{name}-{uuid.uuid4().hex[:8]}.push",
            "PLOP_PUSH_WEBHOOK_URL": f"{receiver.base_url}/webhook",
            "PLOP_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
