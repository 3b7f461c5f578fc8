"""The app factory: FastAPI + the GraphQL router, with a lifespan that owns every backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.runtime import open_runtime
from app.shutdown import GracefulStop
from backends.disk_objects import FILES_PATH
from backends.object_storage import storage_origin
from observability.admin import add_operator_endpoints
from observability.logs import RequestLog
from observability.metrics import INSTANCE
from observability.startup import StartupFailureLine
from schema.root import build_schema
from settings import Settings
from transport.body_size import BodySizeLimit
from transport.cors import add_cors
from transport.draining import RefuseWhileDraining
from transport.file_routes import mount_file_routes
from transport.router import graphql_router
from transport.socket_wire import KeepSocketWire
from web import mount_web


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Plop app; nothing connects until its lifespan starts."""
    config = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        INSTANCE.labels(config.instance_id).set(1)
        async with open_runtime(config) as runtime:
            # The only shared state in the process: what resolvers and sockets reach.
            app.state.services = runtime.services
            app.state.live = runtime.live
            app.state.backends = runtime.backends
            stop = GracefulStop(
                app.state,
                runtime.live.open,
                shutdown_seconds=config.shutdown_seconds,
                notice_seconds=config.shutdown_notice_seconds,
            )
            with stop.installed():
                yield

    app = FastAPI(title="Plop", lifespan=lifespan, docs_url=None, redoc_url=None)
    schema = build_schema(config)
    app.include_router(graphql_router(schema, config), prefix="/graphql")
    mount_web(app, storage_origin(config.storage_url))
    mount_file_routes(app)
    add_operator_endpoints(app, config.admin_port)
    app.add_middleware(RefuseWhileDraining)
    # An upload's body is bounded by its signed size instead (transport/file_routes.py).
    app.add_middleware(
        BodySizeLimit, max_bytes=config.max_request_bytes, unlimited_prefix=FILES_PATH + "/"
    )
    add_cors(app, config.cors_origins)
    app.add_middleware(RequestLog)  # every answer is logged, with its id
    app.add_middleware(StartupFailureLine)
    app.add_middleware(KeepSocketWire)  # outermost: it needs the server's own send
    return app


def create_worker_app() -> FastAPI:
    """The app of one ``plop serve --workers N`` process, from the environment's
    settings: each worker is an instance of its own, so a PLOP_INSTANCE_ID shared by
    the workers gets the worker's process id appended."""
    settings = Settings()
    settings.instance_id = f"{settings.instance_id}-{os.getpid()}"
    return create_app(settings)
