"""The document database: a real MongoDB-protocol server, or an in-process stand-in.

``memory://`` gives the stand-in of ``backends.embedded`` (mongomock-motor, with the
fixes and lookups that make it usable); any ``mongodb://`` URL a real server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient, IndexModel
from pymongo.errors import PyMongoError

from backends.embedded import embedded_database
from errors import BackendUnreachable, ConfigError, describe
from models import DOCUMENT_MODELS
from models.shard_keys import DROPPED_WHEN_SHARDED
from observability.backend_commands import MongoRoundTrips
from observability.store_spans import store_listeners

DEFAULT_DATABASE = "plop"


def database_name(url: str) -> str:
    """The database named by the URL's path, ``plop`` when it names none."""
    name = urlsplit(url).path.lstrip("/")
    return name or DEFAULT_DATABASE


async def aggregate_rows(
    model: type[Document], pipeline: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of an aggregation on the model's collection, on either database.

    pymongo's async ``aggregate`` is awaited for its cursor; the embedded stand-in's
    returns the cursor itself (so Beanie's ``aggregate`` fails on it).
    """
    cursor: Any = model.get_pymongo_collection().aggregate(pipeline)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    rows: list[dict[str, Any]] = await cursor.to_list(None)
    return rows


def indexes_to_create(model: type[Document], sharded: bool) -> list[IndexModel]:
    """The model's declared indexes; on a sharded database, without those that only an
    unsharded collection keeps (``models.shard_keys.DROPPED_WHEN_SHARDED``): MongoDB
    refuses to create them there, and the start would fail."""
    name = model.get_settings().name
    return [
        index.index
        for index in model.get_settings().indexes or []
        if not (sharded and (name, index.index.document["name"]) in DROPPED_WHEN_SHARDED)
    ]


async def _ensure_indexes(sharded: bool) -> None:
    """Creates each model's indexes, one index per command.

    FerretDB 1.24 drops the connection (a server-side panic) when one createIndexes
    command names two or more indexes that already exist, which is what Beanie sends
    on every start after the first. One index per command works on FerretDB and
    MongoDB alike, and creating an existing index is a no-op on both. Indexes are only
    ever added here, never dropped: an index a version no longer declares stays until
    an operator drops it (docs/scaling.md).
    """
    for model in DOCUMENT_MODELS:
        collection = model.get_pymongo_collection()
        for index in indexes_to_create(model, sharded):
            await collection.create_indexes([index])


def _sets_pool_size(url: str) -> bool:
    return any(name.lower() == "maxpoolsize" for name, _ in parse_qsl(urlsplit(url).query))


@asynccontextmanager
async def open_database(
    url: str, timeout_seconds: float, max_connections: int, *, sharded: bool = False
) -> AsyncIterator[None]:
    """Connect Beanie's documents to the database the URL names, for the block's life,
    over at most ``max_connections`` (a ``maxPoolSize`` in the URL wins); ``sharded``
    says its collections are sharded as ``models.shard_keys`` plans."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        await init_beanie(
            database=embedded_database(database_name(url)), document_models=DOCUMENT_MODELS
        )
        yield
        return
    if scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigError(f"PLOP_MONGO_URL has an unsupported scheme: {url!r}")
    timeout_ms = int(timeout_seconds * 1000)
    pool: dict[str, Any] = {} if _sets_pool_size(url) else {"maxPoolSize": max_connections}
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms * 2,
        tz_aware=True,
        **pool,
        event_listeners=[MongoRoundTrips(), *store_listeners()],
    )
    try:
        try:
            await init_beanie(
                database=client[database_name(url)],
                document_models=DOCUMENT_MODELS,
                skip_indexes=True,
            )
            await _ensure_indexes(sharded)
        except PyMongoError as exc:
            raise BackendUnreachable("mongo", url, describe(exc)) from exc
        yield
    finally:
        await client.close()


async def ping_database() -> None:
    """One round trip to the database the documents are bound to."""
    await DOCUMENT_MODELS[0].get_pymongo_collection().database.command("ping")
