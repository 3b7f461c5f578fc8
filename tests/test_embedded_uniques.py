"""The embedded store's unique indexes (unit tests, no server): mongomock's check,
narrowed by the stand-in's lookups, refuses and accepts exactly what it did."""

from __future__ import annotations

from typing import Any

import mongomock.collection
import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from backends.embedded import embedded_database


async def collection(name: str) -> Any:
    found = embedded_database(f"uniques_{name}")[name]
    await found.create_index("key", unique=True)
    await found.create_index([("room", 1), ("seq", 1)], unique=True)
    await found.create_index("maybe", unique=True, sparse=True)
    await found.create_index("nested.key", unique=True)
    return found


async def test_duplicates_of_plain_and_compound_keys_are_refused() -> None:
    messages = await collection("plain")
    assert getattr(mongomock.collection.Collection, "_plop_lookups", False)
    room = ObjectId()
    await messages.insert_one({"key": "a", "room": room, "seq": 1, "nested": {"key": 1}})
    with pytest.raises(DuplicateKeyError):
        await messages.insert_one({"key": "a", "room": room, "seq": 2, "nested": {"key": 2}})
    with pytest.raises(DuplicateKeyError):
        await messages.insert_one({"key": "b", "room": room, "seq": 1, "nested": {"key": 3}})
    with pytest.raises(DuplicateKeyError):  # a dotted key: mongomock's own check
        await messages.insert_one({"key": "c", "room": room, "seq": 3, "nested": {"key": 1}})
    await messages.insert_one({"key": "d", "room": ObjectId(), "seq": 1, "nested": {"key": 4}})
    # 1 and "1" differ, as in MongoDB
    await messages.insert_one({"key": 1, "room": room, "seq": 4, "nested": {"key": 5}})
    await messages.insert_one({"key": "1", "room": room, "seq": 5, "nested": {"key": 6}})
    assert await messages.count_documents({}) == 4


async def test_missing_keys_collide_unless_the_index_is_sparse() -> None:
    documents = await collection("missing")
    await documents.insert_one({"key": "a", "room": 1, "seq": 1, "nested": {"key": 1}})
    await documents.insert_one({"key": "b", "room": 1, "seq": 2, "nested": {"key": 2}})
    await documents.insert_one({"key": "c", "nested": {"key": 3}})
    with pytest.raises(DuplicateKeyError):  # no "room" and "seq": null twice
        await documents.insert_one({"key": "d", "nested": {"key": 4}})


async def test_an_update_onto_a_taken_key_is_refused() -> None:
    documents = await collection("update")
    await documents.insert_one({"key": "a", "room": 1, "seq": 1, "nested": {"key": 1}})
    await documents.insert_one({"key": "b", "room": 1, "seq": 2, "nested": {"key": 2}})
    with pytest.raises(DuplicateKeyError):
        await documents.update_one({"key": "b"}, {"$set": {"key": "a"}})
    assert await documents.count_documents({"key": "b"}) == 1
    # After the rollback, the same document moves to a free key: found under it only.
    await documents.update_one({"key": "b"}, {"$set": {"key": "c"}})
    assert await documents.count_documents({"key": "c"}) == 1
    assert await documents.count_documents({"key": "b"}) == 0
