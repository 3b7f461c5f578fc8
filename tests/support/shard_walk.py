"""Holds models and queries to the sharding plan of ``models.shard_keys``.

Each check returns the problems it found as sentences (empty when there are none),
so that a test shows every one of them at once, and a test of the check itself can
hand it a model or a query that breaks the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from beanie import Document
from beanie.odm.utils.typing import get_index_attributes
from pymongo import IndexModel

from models.shard_keys import AcceptedScatter, ShardKey
from tests.support.query_recorder import RecordedQuery, shown


@dataclass(frozen=True)
class DeclaredIndex:
    collection: str
    name: str
    fields: tuple[str, ...]
    unique: bool


def collection_of(model: type[Document]) -> str:
    name = getattr(model.Settings, "name", None)
    return str(name or model.__name__)


def declared_indexes(model: type[Document]) -> list[DeclaredIndex]:
    """The model's indexes: those of ``Settings.indexes`` and ``Indexed`` fields."""
    collection = collection_of(model)
    found: list[DeclaredIndex] = []
    for index in getattr(model.Settings, "indexes", None) or []:
        if isinstance(index, IndexModel):
            spec = index.document
            fields = tuple(str(field) for field in spec["key"])
            found.append(
                DeclaredIndex(collection, str(spec["name"]), fields, bool(spec.get("unique")))
            )
        elif isinstance(index, str):  # Beanie's shorthand: one field, not unique
            found.append(DeclaredIndex(collection, index, (index,), False))
        else:  # a list of (field, direction): not unique either
            fields = tuple(str(field) for field, _ in index)
            found.append(DeclaredIndex(collection, "_".join(fields), fields, False))
    for name, field in model.model_fields.items():
        attributes = get_index_attributes(field)
        if attributes is not None:
            stored = field.alias or name
            unique = bool(attributes[1].get("unique"))
            found.append(DeclaredIndex(collection, f"{stored} (Indexed)", (stored,), unique))
    return found


def misplaced_uniques(
    models: Iterable[type[Document]],
    shard_keys: Mapping[str, ShardKey],
    dropped_when_sharded: Mapping[tuple[str, str], tuple[str, str]],
) -> list[str]:
    """Unique indexes of sharded collections that do not start with the shard key.

    One kept only until sharding (``dropped_when_sharded``) passes if the index
    named to take its place is declared, unique, starts with the shard key and
    holds the dropped one's fields.
    """
    problems: list[str] = []
    declared = {
        (index.collection, index.name): index for m in models for index in declared_indexes(m)
    }
    for (collection, name), index in declared.items():
        key = shard_keys.get(collection)
        if key is None or not index.unique or index.fields[0] == key.field:
            continue
        if (collection, name) not in dropped_when_sharded:
            problems.append(
                f"{collection}: unique index {name} {index.fields} does not start with "
                f"the shard key {key.field!r}"
            )
    for (collection, name), (replacement, _why) in dropped_when_sharded.items():
        key = shard_keys.get(collection)
        dropped = declared.get((collection, name))
        taking_over = declared.get((collection, replacement))
        if key is None or dropped is None:
            problems.append(f"{collection}: {name} is no unique index of a sharded collection")
        elif (
            taking_over is None
            or not taking_over.unique
            or taking_over.fields[0] != key.field
            or not set(dropped.fields) <= set(taking_over.fields)
        ):
            problems.append(
                f"{collection}: {name} has no unique index starting with {key.field!r} "
                f"and holding {dropped.fields} to take its place ({replacement})"
            )
    return problems


def names_field(query: Mapping[str, Any], field: str) -> bool:
    """Whether every document the filter selects is pinned by ``field``: the field at
    its top, in one of its ``$and`` clauses, or in every branch of its ``$or``."""
    if field in query:
        return True
    if any(names_field(clause, field) for clause in query.get("$and", [])):
        return True
    branches = query.get("$or", [])
    return bool(branches) and all(names_field(branch, field) for branch in branches)


def fields_named(query: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a filter names, at its top and in its ``$and`` and ``$or`` clauses."""
    names: set[str] = set()
    for name, value in query.items():
        if name in ("$and", "$or"):
            for clause in value:
                names.update(fields_named(clause))
        elif not name.startswith("$"):
            names.add(name)
    return tuple(sorted(names))


def scatter_shapes(
    queries: Iterable[RecordedQuery], shard_keys: Mapping[str, ShardKey]
) -> set[tuple[str, tuple[str, ...]]]:
    """(collection, fields named) of each query on a sharded collection that does not
    name its shard key."""
    return {
        (query.collection, fields_named(query.filter))
        for query in queries
        if (key := shard_keys.get(query.collection)) is not None
        and not names_field(query.filter, key.field)
    }


def untargeted(
    queries: Iterable[RecordedQuery],
    shard_keys: Mapping[str, ShardKey],
    accepted: Iterable[AcceptedScatter],
) -> list[str]:
    """Queries on sharded collections that name no shard key and are not an accepted
    scatter (listed once per shape)."""
    allowed = {(scatter.collection, scatter.fields) for scatter in accepted}
    problems: dict[tuple[str, tuple[str, ...]], str] = {}
    for query in queries:
        key = shard_keys.get(query.collection)
        if key is None or names_field(query.filter, key.field):
            continue
        shape = (query.collection, fields_named(query.filter))
        if shape not in allowed:
            problems.setdefault(shape, f"names no {key.field!r}: {shown(query)}")
    return list(problems.values())
