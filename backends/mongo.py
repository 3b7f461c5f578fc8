"""The document database: a real MongoDB-protocol server, or an in-process stand-in.

``memory://`` gives mongomock-motor, which Beanie 2 cannot initialise as it is: Beanie
calls ``list_collection_names(authorizedCollections=True, nameOnly=True)`` and
mongomock rejects both keywords. ``_EmbeddedDatabase`` drops them. And mongomock
checks a unique index by running its generic query filter over every document of
the collection on every insert (80% of the embedded server's CPU under a steady
stream of messages); ``_check_uniques`` compares simple keys directly instead, with
the same result, and leaves every other index to mongomock.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from beanie import Document, init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from errors import BackendUnreachable, ConfigError, describe
from models import DOCUMENT_MODELS
from observability.backend_commands import MongoRoundTrips

DEFAULT_DATABASE = "plop"
# mongomock's own unique check, for the indexes ``_check_uniques`` leaves to it.
_mongomock_check_uniques: Any = None


def database_name(url: str) -> str:
    """The database named by the URL's path, ``plop`` when it names none."""
    name = urlsplit(url).path.lstrip("/")
    return name or DEFAULT_DATABASE


class _EmbeddedDatabase:
    """Wraps a mongomock-motor database so that Beanie's start-up calls work."""

    def __init__(self, database: Any) -> None:
        self._database = database

    async def list_collection_names(self, *args: Any, **kwargs: Any) -> list[str]:
        kwargs.pop("authorizedCollections", None)
        kwargs.pop("nameOnly", None)
        names: list[str] = await self._database.list_collection_names(*args, **kwargs)
        return names

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    def __getitem__(self, name: str) -> Any:
        return self._database[name]


# Values a unique key of Plop's models holds: compared by type and equality they
# match exactly what mongomock's filter would (no arrays, documents or dates).
_PLAIN_KEY_TYPES = (str, int, ObjectId, type(None))


def _check_uniques(collection: Any, new_data: dict[str, Any]) -> None:
    """mongomock's unique-index check (``new_data`` is stored already), direct."""
    plain: list[tuple[list[str], list[object]]] = []
    for index in collection._store.indexes.values():
        if not index.get("unique"):
            continue
        keys = [key for key, _ in index["key"]]
        values = [new_data.get(key) for key in keys]
        if (
            index.get("partialFilterExpression") is not None
            or any("." in key for key in keys)
            or any(type(value) not in _PLAIN_KEY_TYPES for value in values)
        ):
            _mongomock_check_uniques(collection, new_data)
            return
        if index.get("sparse") and all(value is None for value in values):
            continue
        plain.append((keys, values))
    for keys, values in plain:
        pairs = list(zip(keys, values, strict=True))
        found = 0
        for document in collection._store.documents:
            if all(
                type(got := document.get(key)) is type(value) and got == value
                for key, value in pairs
            ):
                found += 1
                if found > 1:
                    raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


def embedded_database(name: str = DEFAULT_DATABASE) -> Any:
    """A fresh in-process database that Beanie accepts."""
    import mongomock.collection
    from mongomock_motor import AsyncMongoMockClient

    global _mongomock_check_uniques
    if mongomock.collection.Collection._ensure_uniques is not _check_uniques:
        _mongomock_check_uniques = mongomock.collection.Collection._ensure_uniques
        mongomock.collection.Collection._ensure_uniques = _check_uniques  # type: ignore[method-assign]
    return _EmbeddedDatabase(AsyncMongoMockClient()[name])


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


async def _ensure_indexes() -> None:
    """Creates each model's indexes, one index per command.

    FerretDB 1.24 drops the connection (a server-side panic) when one createIndexes
    command names two or more indexes that already exist, which is what Beanie sends
    on every start after the first. One index per command works on FerretDB and
    MongoDB alike, and creating an existing index is a no-op on both.
    """
    for model in DOCUMENT_MODELS:
        collection = model.get_pymongo_collection()
        for index in model.get_settings().indexes or []:
            await collection.create_indexes([index.index])


@asynccontextmanager
async def open_database(url: str, timeout_seconds: float) -> AsyncIterator[None]:
    """Connect Beanie's documents to the database the URL names, for the block's life."""
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
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms * 2,
        tz_aware=True,
        event_listeners=[MongoRoundTrips()],
    )
    try:
        try:
            await init_beanie(
                database=client[database_name(url)],
                document_models=DOCUMENT_MODELS,
                skip_indexes=True,
            )
            await _ensure_indexes()
        except PyMongoError as exc:
            raise BackendUnreachable("mongo", url, describe(exc)) from exc
        yield
    finally:
        await client.close()


async def ping_database() -> None:
    """One round trip to the database the documents are bound to."""
    await DOCUMENT_MODELS[0].get_pymongo_collection().database.command("ping")
