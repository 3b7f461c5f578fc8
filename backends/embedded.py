"""The in-process document database of ``memory://``: mongomock-motor, made usable.

Three things stand between mongomock and Plop, and this module is where they are met:

- Beanie 2 calls ``list_collection_names(authorizedCollections=True, nameOnly=True)``
  and mongomock rejects both keywords: ``_EmbeddedDatabase`` drops them.
- pymongo's ``UpdateOne`` hands a bulk write its ``sort`` (None unless given), which
  mongomock's bulk builder rejects: ``accept_bulk_update_sort`` drops a None one.
- mongomock answers every query, and every unique-index check on every insert, by
  running its filter over every document of the collection, so a send got slower as
  messages piled up (20 -> 69 ms over 600 messages in one room). ``_Lookup`` keeps,
  per collection, what a database index keeps: which documents hold each value of
  each declared index's leading fields, and a room's messages in seq order. Before
  mongomock's filter runs, a query with an equality (or ``$in``) on such fields, or a
  numeric range on the field after them, is narrowed to the documents that can
  match; mongomock's own filter then decides over those, in the order it would have
  seen them. The narrowing only ever keeps more than what matches (a value it does
  not understand, an array, a subdocument, keeps its document in every answer), so
  results stay exactly mongomock's. Queries it cannot narrow run as before.

No other embedded MongoDB fits: montydb and mongita are synchronous with APIs of
their own (Beanie drives pymongo's async client), mongomock-ng scans as mongomock
does, and pymongo-inmemory downloads a real mongod at run time.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

from bson import ObjectId

# A value's place in a lookup: equal values (as mongomock compares them) share a key.
_Key: TypeAlias = tuple[Hashable, ...]
# A document's key in its collection's store (its ``_id``, made hashable).
_DocKey: TypeAlias = Hashable

# Values too varied to place (arrays, subdocuments, dates, regexes...): a document
# holding one is a candidate of every query on that field.
_UNPLACED: _Key = ("unplaced",)
_NONE: _Key = ("none",)  # null and a missing field, which equality on null both match
_NOTHING = object()  # no document (an ``_id`` may be None)
# Past this many combinations of ``$in`` values, a query is not narrowed by that index.
_MAX_COMBINATIONS = 256


def _key(value: object) -> _Key:
    """Where a stored or queried value is placed.

    Numbers (bools among them) share one kind, since Python's equality, which
    mongomock's filter uses, makes ``1 == 1.0 == True``; a string subclass (a
    ``StrEnum``) is placed as its plain string.
    """
    if value is None:
        return _NONE
    if isinstance(value, str):
        return ("str", str.__str__(value))
    if isinstance(value, ObjectId):
        return ("oid", value.binary)
    if isinstance(value, bool | int) or (isinstance(value, float) and not math.isnan(value)):
        return ("num", value)
    return _UNPLACED


def _sortable(value: object) -> int | float | None:
    """A value a numeric range compares in order (bools and NaN are left unplaced)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return value


class _EqualityIndex:
    """Which documents hold each combination of values of ``fields``.

    A field holding an array places its document under each of its elements, as a
    multikey index does: an equality on the field matches an array that holds the
    value (``{"member_ids": user}`` finds the user's rooms).
    """

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._buckets: dict[tuple[_Key, ...], set[_DocKey]] = {}
        self._unplaced: set[_DocKey] = set()
        self._entries: dict[_DocKey, list[tuple[_Key, ...]] | None] = {}

    def add(self, doc_key: _DocKey, document: Mapping[str, Any]) -> None:
        placed = _placements(document.get(field) for field in self.fields)
        if placed is None:
            self._entries[doc_key] = None
            self._unplaced.add(doc_key)
            return
        self._entries[doc_key] = placed
        for keys in placed:
            self._buckets.setdefault(keys, set()).add(doc_key)

    def remove(self, doc_key: _DocKey) -> None:
        placed = self._entries.pop(doc_key)
        if placed is None:
            self._unplaced.discard(doc_key)
            return
        for keys in placed:
            bucket = self._buckets[keys]
            bucket.discard(doc_key)
            if not bucket:
                del self._buckets[keys]

    def candidates(self, wanted: list[tuple[_Key, ...]]) -> tuple[int, Callable[[], set[_DocKey]]]:
        """The documents that may hold one of the ``wanted`` value combinations."""
        buckets = [self._buckets.get(keys, set()) for keys in wanted]
        size = sum(map(len, buckets)) + len(self._unplaced)
        return size, lambda: self._unplaced.union(*buckets)


def _placements(values: Iterable[object]) -> list[tuple[_Key, ...]] | None:
    """Every combination of keys a document's values are found under (an array's
    elements each), or None when one cannot be placed: an empty array, an element
    of a kind not placed, or too many combinations."""
    per_field: list[list[_Key]] = []
    for value in values:
        if isinstance(value, list):
            keys = list(dict.fromkeys(_key(element) for element in value))
            if not keys or _UNPLACED in keys:
                return None
        else:
            keys = [_key(value)]
            if keys[0] is _UNPLACED:
                return None
        per_field.append(keys)
    placed = list(itertools.product(*per_field))
    return placed if len(placed) <= _MAX_COMBINATIONS else None


class _RangeIndex:
    """Per combination of values of ``prefix``, its documents in ``field`` order."""

    def __init__(self, prefix: tuple[str, ...], field: str) -> None:
        self.prefix = prefix
        self.field = field
        self._ordered: dict[tuple[_Key, ...], list[tuple[float, int, _DocKey]]] = {}
        self._others: dict[tuple[_Key, ...], set[_DocKey]] = {}  # field not a number
        self._unplaced: set[_DocKey] = set()  # a prefix value that is not placed
        self._entries: dict[
            _DocKey, tuple[tuple[_Key, ...], tuple[float, int, _DocKey] | None]
        ] = {}

    def add(self, doc_key: _DocKey, document: Mapping[str, Any], position: int) -> None:
        keys = tuple(_key(document.get(field)) for field in self.prefix)
        if _UNPLACED in keys:
            self._unplaced.add(doc_key)
            self._entries[doc_key] = (keys, None)
            return
        number = _sortable(document.get(self.field))
        if number is None:
            self._others.setdefault(keys, set()).add(doc_key)
            self._entries[doc_key] = (keys, None)
            return
        entry = (number, position, doc_key)
        bisect.insort(self._ordered.setdefault(keys, []), entry)
        self._entries[doc_key] = (keys, entry)

    def remove(self, doc_key: _DocKey) -> None:
        keys, entry = self._entries.pop(doc_key)
        if _UNPLACED in keys:
            self._unplaced.discard(doc_key)
        elif entry is None:
            self._others[keys].discard(doc_key)
        else:
            ordered = self._ordered[keys]
            del ordered[bisect.bisect_left(ordered, entry)]

    def candidates(
        self,
        wanted: list[tuple[_Key, ...]],
        low: float,
        low_open: bool,
        high: float,
        high_open: bool,
    ) -> tuple[int, Callable[[], set[_DocKey]]]:
        """The documents that may hold one of the ``wanted`` prefixes and a ``field``
        within the bounds (open bounds are cut at the bound itself: mongomock's filter
        decides)."""
        slices: list[Iterable[tuple[float, int, _DocKey]]] = []
        others: list[set[_DocKey]] = []
        size = len(self._unplaced)
        for keys in wanted:
            ordered = self._ordered.get(keys, [])
            start = bisect.bisect_left(ordered, (low,))
            stop = bisect.bisect_right(ordered, (high, math.inf))
            slices.append(itertools.islice(ordered, start, stop))
            others.append(self._others.get(keys, set()))
            size += max(0, stop - start) + len(others[-1])

        def found() -> set[_DocKey]:
            keys = {entry[2] for entry in itertools.chain(*slices)}
            return keys.union(self._unplaced, *others)

        return size, found


def _numeric_bounds(condition: Mapping[str, Any]) -> tuple[float, bool, float, bool] | None:
    low, low_open, high, high_open = -math.inf, False, math.inf, False
    found = False
    for operator, bound in condition.items():
        if operator not in ("$gt", "$gte", "$lt", "$lte"):
            continue
        number = _sortable(bound)
        if number is None:
            return None
        found = True
        if operator in ("$gt", "$gte") and number >= low:
            low, low_open = number, operator == "$gt"
        if operator in ("$lt", "$lte") and number <= high:
            high, high_open = number, operator == "$lt"
    return (low, low_open, high, high_open) if found else None


def _equal_to(condition: object) -> list[_Key] | None:
    """The value keys an equality condition allows, or None when it is not one."""
    if isinstance(condition, Mapping):
        if not condition or not all(str(name).startswith("$") for name in condition):
            return None  # a whole subdocument to compare: left to mongomock
        if "$eq" in condition:
            key = _key(condition["$eq"])
            return None if key is _UNPLACED else [key]
        values = condition.get("$in")
        if not isinstance(values, list | tuple):
            return None
        keys = [_key(value) for value in values]
        return None if _UNPLACED in keys else keys
    key = _key(condition)
    return None if key is _UNPLACED else [key]


class _Lookup:
    """The indexes of one mongomock collection store, kept beside its documents."""

    def __init__(self, store: Any) -> None:
        self.signature = _signature(store)
        self._store = store
        fields = [("_id",)] + [
            keys for keys in self.signature if not any("." in key for key in keys)
        ]
        # What the declared indexes could answer; each is built from the documents the
        # first time a query asks for it, then kept (most are never asked for).
        self._equality_fields = {
            keys[:length] for keys in fields for length in range(1, len(keys) + 1)
        }
        self._range_fields = {
            (keys[: length - 1], keys[length - 1])
            for keys in fields
            for length in range(1, len(keys) + 1)
        }
        self._equality: dict[tuple[str, ...], _EqualityIndex] = {}
        self._ranges: dict[tuple[tuple[str, ...], str], _RangeIndex] = {}
        self._positions: dict[_DocKey, int] = {}
        self._counter = itertools.count()
        # The document the store has just been given, until the next query or check.
        self.just_put: object = _NOTHING
        for doc_key in store._documents:
            self._positions[doc_key] = next(self._counter)

    def _equality_index(self, fields: tuple[str, ...]) -> _EqualityIndex:
        if (found := self._equality.get(fields)) is None:
            found = self._equality[fields] = _EqualityIndex(fields)
            for doc_key, document in self._store._documents.items():
                found.add(doc_key, document)
        return found

    def _range_index(self, prefix: tuple[str, ...], field: str) -> _RangeIndex:
        if (found := self._ranges.get((prefix, field))) is None:
            found = self._ranges[(prefix, field)] = _RangeIndex(prefix, field)
            for doc_key, document in self._store._documents.items():
                found.add(doc_key, document, self._positions[doc_key])
        return found

    def put(self, doc_key: _DocKey, document: Mapping[str, Any]) -> None:
        """(Re)places a stored document; a new one goes last, as in the store's order."""
        if doc_key in self._positions:
            self._take_out(doc_key)
            position = self._positions[doc_key]
        else:
            position = self._positions[doc_key] = next(self._counter)
        for equality in self._equality.values():
            equality.add(doc_key, document)
        for ranged in self._ranges.values():
            ranged.add(doc_key, document, position)

    def remove(self, doc_key: _DocKey) -> None:
        if doc_key in self._positions:
            self._take_out(doc_key)
            del self._positions[doc_key]

    def _take_out(self, doc_key: _DocKey) -> None:
        for equality in self._equality.values():
            equality.remove(doc_key)
        for ranged in self._ranges.values():
            ranged.remove(doc_key)

    def narrowed(self, query: Mapping[str, Any]) -> list[_DocKey] | None:
        """The keys of the documents that may match, in store order; None: all may."""
        found = self._sources(query)
        if found is None:
            return None
        _, materialise = found
        positions = self._positions
        return sorted(materialise(), key=positions.__getitem__)

    def _sources(self, query: Mapping[str, Any]) -> tuple[int, Callable[[], set[_DocKey]]] | None:
        """The smallest candidate set the query's conditions allow, as (size, build)."""
        options: list[tuple[int, Callable[[], set[_DocKey]]]] = []
        equal: dict[str, list[_Key]] = {}
        ranges: dict[str, tuple[float, bool, float, bool]] = {}
        for field, condition in _conjuncts(query):
            if field == "$or" and isinstance(condition, list | tuple) and condition:
                branches = [
                    self._sources(part) if isinstance(part, Mapping) else None for part in condition
                ]
                if all(branch is not None for branch in branches):
                    options.append(_union([branch for branch in branches if branch is not None]))
            elif not field.startswith("$") and "." not in field:
                # A field with conditions in several parts of an $and: narrowing by
                # the first keeps a superset of what all of them match.
                if (keys := _equal_to(condition)) is not None:
                    equal.setdefault(field, keys)
                elif (
                    isinstance(condition, Mapping)
                    and (bounds := _numeric_bounds(condition)) is not None
                ):
                    ranges.setdefault(field, bounds)
        for fields in self._equality_fields:
            if (wanted := _combinations(fields, equal)) is not None:
                options.append(self._equality_index(fields).candidates(wanted))
        for prefix, field in self._range_fields:
            if field in ranges and (wanted := _combinations(prefix, equal)) is not None:
                options.append(self._range_index(prefix, field).candidates(wanted, *ranges[field]))
        return min(options, key=lambda option: option[0]) if options else None


def _conjuncts(query: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The query's conditions that must all hold, ``$and`` parts (as Beanie sends
    two conditions) taken apart into their fields."""
    for field, condition in query.items():
        if field == "$and" and isinstance(condition, list | tuple):
            for part in condition:
                if isinstance(part, Mapping):
                    yield from _conjuncts(part)
        else:
            yield str(field), condition


def _combinations(
    fields: tuple[str, ...], equal: dict[str, list[_Key]]
) -> list[tuple[_Key, ...]] | None:
    if not all(field in equal for field in fields):
        return None
    if math.prod(len(equal[field]) for field in fields) > _MAX_COMBINATIONS:
        return None
    return list(itertools.product(*(equal[field] for field in fields)))


def _union(
    branches: list[tuple[int, Callable[[], set[_DocKey]]]],
) -> tuple[int, Callable[[], set[_DocKey]]]:
    return sum(size for size, _ in branches), lambda: set().union(
        *(build() for _, build in branches)
    )


def _signature(store: Any) -> tuple[tuple[str, ...], ...]:
    """The declared indexes' fields, which decide what a lookup keeps."""
    return tuple(tuple(str(field) for field, _ in index["key"]) for index in store.indexes.values())


def _lookup_of(store: Any) -> _Lookup | None:
    """The store's lookup, built on first use and again when its indexes change;
    None for a store with TTL indexes (mongomock expires documents as it reads)."""
    if store._ttl_indexes:
        return None
    lookup: _Lookup | None = store.__dict__.get("_plop_lookup")
    if lookup is None or lookup.signature != _signature(store):
        lookup = store._plop_lookup = _Lookup(store)
    return lookup


def _kept_lookup(store: Any) -> _Lookup | None:
    """The store's lookup if one is built and still current (writes keep it so)."""
    lookup: _Lookup | None = store.__dict__.get("_plop_lookup")
    if lookup is not None and lookup.signature != _signature(store):
        del store._plop_lookup
        return None
    return lookup


def _store_key(document: Mapping[str, Any]) -> _DocKey:
    from mongomock import helpers

    doc_id = document.get("_id")
    return helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


def install_lookups() -> None:
    """Teaches mongomock's collections to keep and use their lookups (once a process)."""
    import mongomock.collection
    import mongomock.store
    from mongomock import filtering

    filter_applies: Callable[[Mapping[str, Any], Any], bool] = filtering.filter_applies

    store_class: Any = mongomock.store.CollectionStore
    collection_class: Any = mongomock.collection.Collection
    if getattr(collection_class, "_plop_lookups", False):
        return
    set_item, del_item, drop = store_class.__setitem__, store_class.__delitem__, store_class.drop
    iter_documents, ensure_uniques = (
        collection_class._iter_documents,
        collection_class._ensure_uniques,
    )

    def stored(store: Any, key: _DocKey, document: Any) -> None:
        set_item(store, key, document)
        if (lookup := _kept_lookup(store)) is not None:
            lookup.put(key, document)
            lookup.just_put = key

    def deleted(store: Any, key: _DocKey) -> None:
        del_item(store, key)
        if (lookup := _kept_lookup(store)) is not None:
            lookup.remove(key)

    def dropped(store: Any) -> None:
        drop(store)
        store.__dict__.pop("_plop_lookup", None)

    def checked(collection: Any, new_data: Mapping[str, Any]) -> None:
        # An update changes its document in place and checks the unique indexes
        # next: the lookup must see the new values first. An insert checks the
        # document it has just stored, which the lookup has seen already (every
        # update queries first, which forgets ``just_put``).
        store = collection._store
        key = _store_key(new_data)
        lookup = _kept_lookup(store)
        if lookup is not None and lookup.just_put != key and key in store._documents:
            lookup.put(key, store._documents[key])
        if lookup is not None:
            lookup.just_put = _NOTHING
        ensure_uniques(collection, new_data)

    def matching(collection: Any, query: Mapping[str, Any]) -> Iterator[Any]:
        store = collection._store
        lookup = _lookup_of(store)
        if lookup is not None:
            lookup.just_put = _NOTHING
        keys = lookup.narrowed(query) if lookup is not None else None
        if keys is None:
            found: Iterator[Any] = iter_documents(collection, query)
            return found
        if not keys:
            filter_applies(query, {})  # a malformed query still fails, as on a scan
        documents = store._documents
        candidates = [documents[key] for key in keys]
        return (document for document in candidates if filter_applies(query, document))

    store_class.__setitem__, store_class.__delitem__, store_class.drop = stored, deleted, dropped
    collection_class._iter_documents, collection_class._ensure_uniques = matching, checked
    collection_class._plop_lookups = True


def accept_bulk_update_sort() -> None:
    """Lets mongomock's bulk updates take pymongo's ``sort`` when it is None (once a
    process); a sort given is refused, as mongomock refuses what it cannot do."""
    import mongomock.collection

    builder: Any = mongomock.collection.BulkOperationBuilder
    if getattr(builder, "_plop_sort", False):
        return
    add_update = builder.add_update

    def add_update_without_sort(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("a sorted bulk update is not implemented in mongomock")
        return add_update(self, *args, **kwargs)

    builder.add_update = add_update_without_sort
    builder._plop_sort = True


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


def embedded_database(name: str) -> Any:
    """A fresh in-process database that Beanie accepts."""
    from mongomock_motor import AsyncMongoMockClient

    install_lookups()
    accept_bulk_update_sort()
    return _EmbeddedDatabase(AsyncMongoMockClient()[name])
