"""The embedded store's lookups (unit tests, no server): a query they narrow finds
exactly the documents, in exactly the order, that mongomock's full scan finds,
through any sequence of inserts, updates, replacements and deletes, on the query
shapes Plop sends and on stored values of unexpected types."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError

from backends.embedded import _lookup_of, embedded_database, install_lookups

ROOMS = [ObjectId() for _ in range(3)]
SENDERS = [ObjectId() for _ in range(2)]
EPOCH = datetime(2026, 1, 1)  # naive, as mongomock stores dates


def scanned(collection: Any, query: dict[str, Any]) -> list[Any]:
    """What mongomock's own ``_iter_documents`` answers: every document, filtered."""
    documents = list(collection._store._documents.values())
    return [document for document in documents if filter_applies(query, document)]  # type: ignore[no-untyped-call]


def messages(name: str) -> Any:
    install_lookups()
    collection: Any = mongomock.MongoClient()["lookups"][name]
    collection.create_index([("room_id", 1), ("seq", -1)], unique=True)
    collection.create_index("idempotency_key", unique=True)
    collection.create_index([("published", 1), ("created_at", 1)])
    collection.create_index([("update_published", 1), ("updated_at", 1)])
    # An array field, as rooms hold their members: a multikey index.
    collection.create_index([("member_ids", 1), ("created_at", -1)])
    return collection


def odd_value(rng: random.Random) -> object:
    """Values Plop never stores, which the lookups must still answer right."""
    return rng.choice([None, [ROOMS[0], 3], {"x": 1}, 2.0, True, "2", 1.5, float("nan"), 7])


def message(rng: random.Random, number: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "room_id": rng.choice(ROOMS),
        "seq": rng.randint(1, 40),
        "sender_id": rng.choice(SENDERS),
        "idempotency_key": f"key-{rng.randint(1, 200)}",
        "published": rng.random() < 0.5,
        "update_published": rng.random() < 0.8,
        "created_at": EPOCH + timedelta(seconds=number),
        "member_ids": rng.sample(SENDERS + ROOMS, rng.randint(0, 3)),
    }
    if rng.random() < 0.1:
        document[rng.choice(["room_id", "seq", "published", "member_ids"])] = odd_value(rng)
    if rng.random() < 0.05:
        del document[rng.choice(["room_id", "seq"])]
    return document


def queries(rng: random.Random, collection: Any) -> list[dict[str, Any]]:
    ids = [document["_id"] for document in collection._store._documents.values()]
    some_id = rng.choice(ids) if ids else ObjectId()
    room, other = rng.sample(ROOMS, 2)
    low, high = sorted(rng.sample(range(0, 42), 2))
    return [
        {"_id": some_id},
        {"_id": {"$in": [*rng.sample(ids, min(5, len(ids))), ObjectId()]}},
        {"room_id": room, "seq": low},
        {"$and": [{"room_id": room}, {"seq": high}]},
        {"room_id": room, "seq": {"$gt": low, "$lt": high}},
        {"room_id": room, "seq": {"$gte": low}},
        {"room_id": room, "seq": {"$lte": high + 0.5}},
        {"room_id": room, "seq": {"$gt": True}},
        {"room_id": room, "seq": {"$gt": "1"}},
        {"$or": [{"room_id": room, "seq": {"$gt": low}}, {"room_id": other, "seq": high}]},
        {"$or": [{"room_id": room, "seq": {"$gt": high}}], "sender_id": {"$ne": SENDERS[0]}},
        {"idempotency_key": f"key-{rng.randint(1, 200)}"},
        {"published": False, "created_at": {"$lt": EPOCH + timedelta(seconds=low)}},
        {"update_published": False},
        {"room_id": room},
        {"room_id": None},
        {"room_id": {"$in": [room, other]}},
        {"room_id": {"$eq": room}, "seq": {"$in": [low, high, float(low)]}},
        {"seq": {"$gt": high}},
        {"seq": 2},
        {"seq": 2.0},
        {"published": 1},
        {"room_id": {"x": 1}},
        {"room_id": [ROOMS[0], 3]},
        {"room_id": ROOMS[0], "seq": {"$not": {"$gt": low}}},
        {"member_ids": room},
        {"member_ids": {"$in": [room, SENDERS[0]]}},
        {"member_ids": room, "created_at": {"$gt": EPOCH + timedelta(seconds=low)}},
        {"member_ids": None},
        {"member_ids": []},
        {"member_ids": [ROOMS[0], 3]},
        {"member_ids": 3},
        {},
    ]


def check(rng: random.Random, collection: Any) -> None:
    for query in queries(rng, collection):
        narrowed = list(collection._iter_documents(query))
        expected = scanned(collection, query)
        assert [id(d) for d in narrowed] == [id(d) for d in expected], query


def change(rng: random.Random, collection: Any, number: int) -> None:
    ids = [document["_id"] for document in collection._store._documents.values()]
    action = rng.random()
    try:
        if action < 0.45 or not ids:
            collection.insert_one(message(rng, number))
        elif action < 0.6:
            collection.update_many(
                {"_id": {"$in": rng.sample(ids, min(4, len(ids)))}}, {"$set": {"published": True}}
            )
        elif action < 0.75:
            collection.update_one(
                {"_id": rng.choice(ids)},
                {
                    "$set": {
                        rng.choice(["room_id", "seq", "idempotency_key", "member_ids"]): (
                            odd_value(rng)
                        )
                    }
                },
            )
        elif action < 0.85:
            collection.replace_one({"_id": rng.choice(ids)}, message(rng, number))
        elif action < 0.95:
            collection.delete_one({"_id": rng.choice(ids)})
        else:
            collection.update_one(
                {"idempotency_key": f"key-{rng.randint(1, 200)}"},
                {"$set": {"seq": rng.randint(1, 40)}, "$setOnInsert": {"room_id": ROOMS[1]}},
                upsert=True,
            )
    except DuplicateKeyError:
        pass  # refused, and rolled back: the lookups must follow the rollback too


@pytest.mark.parametrize("seed", range(4))
def test_narrowed_queries_find_what_a_full_scan_finds(seed: int) -> None:
    rng = random.Random(seed)
    collection = messages(f"random_{seed}")
    for number in range(400):
        change(rng, collection, number)
        if number % 10 == 0:
            check(rng, collection)
    check(rng, collection)
    assert _lookup_of(collection._store) is not None


def test_a_room_query_reads_only_that_room() -> None:
    collection = messages("narrow")
    seqs = list(range(1, 1001))
    random.Random(7).shuffle(seqs)  # stored out of order, read back in order
    for seq in seqs:
        collection.insert_one({"room_id": ROOMS[seq % 2], "seq": seq, "idempotency_key": str(seq)})
    lookup = _lookup_of(collection._store)
    assert lookup is not None
    at = lookup.narrowed({"room_id": ROOMS[0], "seq": 500})
    assert at is not None and len(at) == 1
    # Beanie sends two conditions as an $and of two parts: one document all the same.
    at = lookup.narrowed({"$and": [{"room_id": ROOMS[0]}, {"seq": 500}]})
    assert at is not None and len(at) == 1
    after = lookup.narrowed({"$and": [{"room_id": ROOMS[1]}, {"seq": {"$gt": 990}}]})
    assert after is not None and len(after) == 5
    after = lookup.narrowed({"room_id": ROOMS[1], "seq": {"$gt": 990}})
    assert after is not None and len(after) == 5
    for low in range(0, 1000, 37):
        query = {"room_id": ROOMS[1], "seq": {"$gte": low, "$lte": low + 100}}
        between = lookup.narrowed(query)
        assert between is not None and len(between) == len(scanned(collection, query))
    assert lookup.narrowed({"text": "hello"}) is None  # nothing to narrow by: a scan


def test_a_member_query_reads_only_the_rooms_that_hold_the_member() -> None:
    """Rooms by member, as ``joined_room_ids`` asks: an array field, indexed multikey."""
    install_lookups()
    collection: Any = mongomock.MongoClient()["lookups"]["members"]
    collection.create_index([("member_ids", 1), ("last_activity_at", -1)])
    people = [ObjectId() for _ in range(50)]
    for number in range(500):
        members = [people[number % 50], people[(number * 7 + 1) % 50]]
        collection.insert_one({"member_ids": members, "idempotency_key": str(number)})
    lookup = _lookup_of(collection._store)
    assert lookup is not None
    for person in people[:5]:
        query = {"member_ids": person}
        found = lookup.narrowed(query)
        assert found is not None and len(found) == len(scanned(collection, query)) < 40


def test_a_new_index_and_a_dropped_collection_rebuild_the_lookup() -> None:
    collection = messages("rebuild")
    collection.insert_one({"room_id": ROOMS[0], "seq": 1, "idempotency_key": "a", "tag": "x"})
    assert list(collection.find({"tag": "x"}, {"_id": 0, "seq": 1})) == [{"seq": 1}]
    collection.create_index("tag")
    collection.insert_one({"room_id": ROOMS[0], "seq": 2, "idempotency_key": "b", "tag": "x"})
    assert [d["seq"] for d in collection.find({"tag": "x"})] == [1, 2]
    collection.drop()
    assert list(collection.find({"room_id": ROOMS[0]})) == []


async def test_the_embedded_database_finds_through_beanie_shaped_queries() -> None:
    collection = embedded_database("lookups_async")["messages"]
    await collection.create_index([("room_id", 1), ("seq", -1)], unique=True)
    for seq in range(1, 51):
        await collection.insert_one({"room_id": ROOMS[0], "seq": seq})
    with pytest.raises(DuplicateKeyError):
        await collection.insert_one({"room_id": ROOMS[0], "seq": 7})
    cursor = collection.find({"$and": [{"room_id": ROOMS[0]}, {"seq": {"$gt": 45}}]})
    found = await cursor.sort("seq", -1).limit(2).to_list(None)
    assert [document["seq"] for document in found] == [50, 49]
