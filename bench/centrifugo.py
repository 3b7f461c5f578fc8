"""Centrifugo as a peer of the benchmarks: built here, run beside Plop, same load.

``ensure_binary`` builds Centrifugo with ``go install`` into the per-user cache
(``~/.cache/plop/centrifugo/<version>/``, Go's module and build caches beside it)
once per version; a run finds it there afterwards. ``centrifugo_target`` starts it
on loopback with ``server_config`` and yields a ``CentrifugoTarget``: the scenarios
drive it as they drive Plop and the raw baseline, with the same load processes
(``bench.load``, speaking Centrifugo's client JSON protocol), the same senders and the
same message bodies, published through its HTTP API (``/api/publish``).

Clients connect with an HS256 connection JWT per bench user (the counterpart of
Plop's session token) and may subscribe to any channel without a namespace, as
members of every room. Only ``plop bench ... --peer centrifugo`` runs it: the build
takes minutes on a new machine, so the test suite never does.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt

from bench.baseline import SENDER, encode
from bench.rawhttp import HttpConnection, HttpError
from bench.server import HOST, LOG_DIR, ServerGroup, ServerProcess
from bench.targets import CENTRIFUGO_JSON, Account, Population, SendFailed, Target, WireProtocol
from devtools.processes import free_port, plain_env

VERSION = "v6.9.1"
MODULE = "github.com/centrifugal/centrifugo/v6"
LABEL = f"Centrifugo {VERSION}"
BUILD_TIMEOUT_SECONDS = 1_200.0
# One core, as Plop's one worker (its event loop) uses one: CPU per delivery is then
# comparable, and the load processes keep the other core.
GO_MAX_PROCS = "1"
TOKEN_LIFETIME_SECONDS = 24 * 3600
HEALTH_PATH = "/healthz"  # where ServerProcess looks for readiness


class BuildFailed(Exception):
    """``go`` is missing or ``go install`` failed."""


def cache_dir() -> Path:
    """The per-user cache of builds: ``$XDG_CACHE_HOME/plop/centrifugo``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "plop" / "centrifugo"


def binary_path(version: str = VERSION, cache: Path | None = None) -> Path:
    """Where the build of ``version`` lives (one directory per version)."""
    return (cache or cache_dir()) / version / "bin" / "centrifugo"


def build_env(version: str = VERSION, cache: Path | None = None) -> dict[str, str]:
    """Go's environment for the build: everything under the cache, nothing in ~/go."""
    root = cache or cache_dir()
    return {
        **os.environ,
        "GOBIN": str(binary_path(version, root).parent),
        "GOPATH": str(root / "gopath"),
        "GOCACHE": str(root / "gocache"),
        # Read-only module files would make the cache undeletable with rm -r.
        "GOFLAGS": "-modcacherw",
    }


def install_argv(version: str = VERSION) -> list[str]:
    """``go install`` of the module at ``version``.

    Such a build reports its version as 0.0.0 (releases stamp it at link time); the
    directory it is installed in names the version instead.
    """
    return ["go", "install", f"{MODULE}@{version}"]


async def ensure_binary(version: str = VERSION) -> Path:
    """The Centrifugo binary of ``version``, built first if this machine has none."""
    binary = binary_path(version)
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise BuildFailed(f"building {LABEL} needs Go (https://go.dev/dl/) on PATH")
    binary.parent.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir() / f"build-{version}.log"
    sys.stdout.write(f"building {LABEL} with go install (minutes, once); log: {log_path}\n")
    sys.stdout.flush()
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *install_argv(version),
            env=build_env(version),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(BUILD_TIMEOUT_SECONDS):
                status = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise BuildFailed(f"go install took over {BUILD_TIMEOUT_SECONDS:g} s") from None
    if status != 0 or not binary.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise BuildFailed(f"go install {MODULE}@{version} failed ({status}):\n{tail}")
    sys.stdout.write(f"built {LABEL} in {time.monotonic() - started:.0f} s: {binary}\n")
    return binary


def server_config(port: int, api_key: str, token_secret: str) -> dict[str, Any]:
    """Centrifugo v6's configuration for a benchmark on loopback.

    The HTTP API needs the key; clients need a JWT signed with the secret; any client
    may subscribe to a channel without a namespace (history, presence and recovery
    stay off, as the raw baseline has none).
    """
    return {
        "http_server": {"address": HOST, "port": port},
        "log": {"level": "info"},
        "health": {"enabled": True, "handler_prefix": HEALTH_PATH},
        "http_api": {"key": api_key},
        "client": {
            "token": {"hmac_secret_key": token_secret},
            # Its default (ping every 25 s, pong within 8 s) closed 3,000 of 5,000
            # sockets of a load process running behind on a saturated machine (3012,
            # no pong): the bench measures delivery, not the load's ping latency.
            "ping_interval": "60s",
            "pong_timeout": "50s",
        },
        "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
        "usage_stats": {"disabled": True},
    }


def connection_token(user_id: str, secret: str, now: float | None = None) -> str:
    """An HS256 connection JWT for ``user_id`` (``sub``), valid for a day."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": user_id, "iat": issued, "exp": issued + TOKEN_LIFETIME_SECONDS}
    return jwt.encode(claims, secret, algorithm="HS256")


def message(channel: str, seq: int, text: str) -> dict[str, Any]:
    """The publication's data: the raw baseline's message, field for field, so that
    frames have the same size as Plop's messageAdded."""
    return {
        "id": secrets.token_hex(12),
        "roomId": channel,
        "seq": seq,
        "text": text,
        "clientId": secrets.token_hex(8),
        "createdAt": datetime.now(UTC).isoformat(),
        "sender": SENDER,
    }


class CentrifugoTarget(Target):
    """Centrifugo behind the scenarios' Target interface.

    Centrifugo gives a publication no seq without history, so the target numbers each
    channel's publications itself; the one sequential sender per room keeps them in
    order, and the load's books count lost and duplicated seqs as for the others.
    """

    def __init__(self, server: ServerGroup, api_key: str, token_secret: str) -> None:
        super().__init__("centrifugo", LABEL, server)
        self._api_key = api_key
        self._token_secret = token_secret
        self._seqs: dict[str, int] = {}

    @property
    def protocol(self) -> WireProtocol:
        return CENTRIFUGO_JSON

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://{HOST}:{port}/connection/websocket" for port in self.server.ports]

    def _api(self, method: str) -> str:
        # The key as a query parameter: the load's raw HTTP client sends no other header.
        return f"/api/{method}?api_key={self._api_key}"

    async def send(self, connection: HttpConnection, account: Account, room: str, text: str) -> int:
        """Publishes one message to the room's channel; its seq."""
        seq = self._seqs.get(room, 0) + 1
        self._seqs[room] = seq
        body = encode({"channel": room, "data": message(room, seq, text)}).encode()
        try:
            answer = json.loads(await connection.post(self._api("publish"), body))
        except HttpError as exc:
            raise SendFailed(str(exc)) from exc
        if answer.get("error"):
            raise SendFailed(json.dumps(answer["error"])[:500])
        return seq

    async def subscriptions(self) -> int:
        """Subscriptions held now: the channels' subscribers, summed (one per socket)."""
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(f"{self.server.base_url}{self._api('channels')}", json={})
        channels = (answer.json().get("result") or {}).get("channels") or {}
        return sum(int(info.get("num_clients", 0)) for info in channels.values())

    async def populate(self, users: int, rooms: int) -> Population:
        """``users`` JWTs and ``rooms`` channels, with ids as long as Plop's."""
        ids = [secrets.token_hex(12) for _ in range(users)]
        return Population(
            [Account(connection_token(user, self._token_secret), user) for user in ids],
            [secrets.token_hex(12) for _ in range(rooms)],
        )


@asynccontextmanager
async def centrifugo_target(name: str) -> AsyncIterator[CentrifugoTarget]:
    """Centrifugo built (once) and running on a free loopback port, for one scenario."""
    binary = await ensure_binary()
    port = free_port()
    api_key, token_secret = secrets.token_hex(16), secrets.token_hex(32)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    config_path = LOG_DIR / f"{name}.json"
    config_path.write_text(json.dumps(server_config(port, api_key, token_secret), indent=2))
    env = {**plain_env(), "GOMAXPROCS": GO_MAX_PROCS}
    process = ServerProcess(name, [str(binary), "--config", str(config_path)], env, port, LOG_DIR)
    server = ServerGroup([process])
    await server.start()
    try:
        yield CentrifugoTarget(server, api_key, token_secret)
    finally:
        await server.stop()
