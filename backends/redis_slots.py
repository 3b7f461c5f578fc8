"""Hash slots: where Redis Cluster keeps a key, and what may share one command.

A script or a multi-key command runs on one node, so its keys must all hash to one
slot. Plop keeps the keys of one subject together with a hash tag named after it
(``plop:presence:{user:ID}:conns`` and ``...:state`` hash ``user:ID`` alone); work
over many subjects at once (the locks of a page of messages, the budgets of a
logIn, the block epochs of a page of users) is split by slot here, one call per
slot. On one Redis server every key is in reach of one call, and nothing is split.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from backends.redis import KeyValueStore


def slot_of(key: str) -> int:
    """The cluster hash slot of a key (of its hash tag, if it has one)."""
    return int(key_slot(key.encode()))


def hash_tag(subject: str) -> str:
    """``{subject}``: keys that contain it are kept in the same slot."""
    # A brace inside the subject would end the tag early; ids never hold one.
    return "{" + subject.replace("{", "(").replace("}", ")") + "}"


def is_cluster(redis: KeyValueStore) -> bool:
    return isinstance(redis, RedisCluster)


def positions_by_slot(redis: KeyValueStore, keys: Sequence[str]) -> list[list[int]]:
    """The positions of ``keys``, grouped so that each group may be one command:
    by slot on a cluster, all together on one server."""
    if not keys:
        return []
    if not is_cluster(redis):
        return [list(range(len(keys)))]
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(position)
    return list(groups.values())


async def read_many(redis: KeyValueStore, keys: Sequence[str]) -> list[Any]:
    """The values of the keys, in their order: one MGET on a server; on a cluster one
    MGET per slot, sent at once (not atomic across slots, which these reads never
    need)."""
    groups = positions_by_slot(redis, keys)
    answers = await asyncio.gather(*(redis.mget([keys[i] for i in group]) for group in groups))
    values: list[Any] = [None] * len(keys)
    for group, answer in zip(groups, answers, strict=True):
        for position, value in zip(group, answer, strict=True):
            values[position] = value
    return values
