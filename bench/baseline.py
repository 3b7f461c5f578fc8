"""The raw baseline: a plain FastAPI app doing the least a messenger's hot paths need.

``POST /send`` takes the same JSON body as Plop's sendMessage request, gives the
message the channel's next seq and answers with the same shape as sendMessage; with
subscribers on the channel it also broadcasts the message to every one of them.
``/ws`` speaks just enough graphql-transport-ws (connection_init, subscribe,
ping, complete) for the same load generator to drive it, and sends each message as
the same ``next`` frame as Plop's messageAdded, encoded the same way (compact JSON):
the payload is encoded once per message, only the frame's id prefix is per socket,
and each socket has a queue and a writer task of its own.

It is a yardstick for the benchmarks, never part of Plop: no auth, no storage, no
limits. ``python -m bench.baseline --port PORT`` serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections import defaultdict
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from starlette.responses import Response

SUBPROTOCOL = "graphql-transport-ws"
# As long as the id and username of a bench user on Plop.
SENDER = {"id": "0" * 24, "username": "b00000000_0"}


def encode(data: object) -> str:
    """JSON as Plop's GraphQL router encodes it."""
    return json.dumps(data, separators=(",", ":"))


class Subscriber:
    """One socket: its subscriptions (operation id -> channel) and a writer task."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self.operations: dict[str, str] = {}
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            frame = await self.frames.get()
            try:
                await self.websocket.send_text(frame)
            except Exception:
                return  # the peer is gone; the receive loop ends the socket


class Broadcaster:
    """Channels, their subscribers and seqs."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[tuple[int, str], Subscriber]] = defaultdict(dict)
        self.seqs: dict[str, int] = defaultdict(int)
        self.subscriptions = 0

    def add(self, subscriber: Subscriber, operation_id: str, channel: str) -> None:
        subscriber.operations[operation_id] = channel
        self.channels[channel][(id(subscriber), operation_id)] = subscriber
        self.subscriptions += 1

    def remove(self, subscriber: Subscriber, operation_id: str) -> None:
        channel = subscriber.operations.pop(operation_id, None)
        if channel is None:
            return
        members = self.channels.get(channel, {})
        members.pop((id(subscriber), operation_id), None)
        if not members:
            self.channels.pop(channel, None)
        self.subscriptions -= 1

    def publish(self, channel: str, text: str, client_id: str | None) -> dict[str, Any]:
        self.seqs[channel] += 1
        message: dict[str, Any] = {
            "id": secrets.token_hex(12),
            "roomId": channel,
            "seq": self.seqs[channel],
            "text": text,
            "clientId": client_id,
            "createdAt": datetime.now(UTC).isoformat(),
            "sender": SENDER,
        }
        payload = encode({"data": {"messageAdded": message}})
        for (_, operation_id), subscriber in tuple(self.channels.get(channel, {}).items()):
            subscriber.frames.put_nowait(
                f'{{"id":{encode(operation_id)},"type":"next","payload":{payload}}}'
            )
        return message


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    hub = Broadcaster()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {"subscriptions": hub.subscriptions}

    @app.post("/send")
    async def send(request: Request) -> Response:
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        message = hub.publish(
            str(variables["roomId"]), str(variables["text"]), variables.get("clientId")
        )
        answer = {"data": {"sendMessage": {"id": message["id"], "seq": message["seq"]}}}
        return Response(encode(answer), media_type="application/json")

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=SUBPROTOCOL)
        subscriber = Subscriber(websocket)
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                kind = frame.get("type")
                if kind == "connection_init":
                    subscriber.frames.put_nowait(encode({"type": "connection_ack"}))
                elif kind == "ping":
                    subscriber.frames.put_nowait(encode({"type": "pong"}))
                elif kind == "subscribe":
                    variables = (frame.get("payload") or {}).get("variables") or {}
                    hub.add(subscriber, str(frame["id"]), str(variables["roomId"]))
                elif kind == "complete":
                    hub.remove(subscriber, str(frame["id"]))
        except WebSocketDisconnect:
            pass
        finally:
            for operation_id in tuple(subscriber.operations):
                hub.remove(subscriber, operation_id)
            subscriber.writer.cancel()
            with suppress(asyncio.CancelledError):
                await subscriber.writer

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The raw FastAPI baseline of the benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host=options.host,
        port=options.port,
        ws_max_size=64 * 1024,  # as ``plop serve`` by default
        log_level="info",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
