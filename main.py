"""The app factory: FastAPI + the GraphQL router, with a lifespan that owns every backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.collector import settle_collector
from app.runtime import open_runtime
from app.server_edge import GRAPHQL_PATH, ServerEdge
from app.shutdown import GracefulStop
from backends.disk_objects import FILES_PATH
from backends.object_storage import storage_origin
from observability.admin import add_operator_endpoints
from observability.alloc_profile import profiled
from observability.metrics import INSTANCE
from schema.root import build_schema
from settings import Settings
from transport.file_routes import mount_file_routes
from transport.router import graphql_router
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
            with stop.installed(), profiled(config.tracemalloc_dir):
                yield

    app = FastAPI(title="Plop", lifespan=lifespan, docs_url=None, redoc_url=None)
    schema = build_schema(config)
    router = graphql_router(schema, config)
    app.include_router(router, prefix=GRAPHQL_PATH)
    mount_web(app, storage_origin(config.storage_url))
    mount_file_routes(app)
    add_operator_endpoints(app, config.admin_port)
    # One layer for what each request needs of Plop's own: the socket wire, the
    # start-up failure line, the request log, CORS, the body limit (an upload's body
    # is bounded by its signed size instead, transport/file_routes.py), draining, and
    # sendMessage's way straight to the GraphQL view (app/server_edge.py).
    app.add_middleware(
        ServerEdge,
        graphql=router,
        max_bytes=config.max_request_bytes,
        unlimited_prefix=FILES_PATH + "/",
        cors_origins=config.cors_origins,
    )
    return app


def create_worker_app() -> FastAPI:
    """The app of one ``plop serve --workers N`` process, from the environment's
    settings: each worker is an instance of its own, so a PLOP_INSTANCE_ID shared by
    the workers gets the worker's process id appended."""
    settings = Settings()
    settings.instance_id = f"{settings.instance_id}-{os.getpid()}"
    app = create_app(settings)
    settle_collector()  # each worker is a server process of its own (app.collector)
    return app
