"""``plop``: run the server (more commands join it as they are built)."""

from __future__ import annotations

import logging

import click
import uvicorn

from settings import Settings


@click.group(help="Plop: a real-time messenger backend served as one GraphQL API.")
def main() -> None:
    pass


@main.command(help="Serve the GraphQL API (GraphiQL at http://HOST:PORT/graphql).")
@click.option("--host", default=None, help="Interface to bind [default: PLOP_HOST or 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default: PLOP_PORT or 8000].")
def serve(host: str | None, port: int | None) -> None:
    settings = Settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.max_websocket_message_bytes,
        log_level=settings.log_level.lower(),
        lifespan="on",
    )
