"""Every Redis command Plop sends keeps its keys in one hash slot, as Redis Cluster
requires, with no cluster: the services run against a client that refuses, as the
cluster would, a script or multi-key command whose keys span slots, and every Lua
script they register names its keys only through KEYS (a key a script builds itself
could be on another node)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import fakeredis
import pytest
from beanie import PydanticObjectId
from redis.asyncio.client import Pipeline

from auth.sessions import SessionStore, session_id
from backends import redis_slots
from backends.redis_slots import hash_tag, positions_by_slot, read_many, slot_of
from errors import RateLimited
from pubsub import PresenceChanged, TypingChanged
from services.event_positions import EventPositions
from services.locks import Locks
from services.presence import OFFLINE, PresenceService
from services.rate_limits import LimitName, RateLimiter, limits_from_settings
from services.room_turns import RedisRoomTurns
from services.typing import TypingService
from settings import Settings


class CrossSlot(Exception):
    """What Redis Cluster answers a command whose keys are in several slots."""


def _keys_of(args: tuple[Any, ...]) -> list[str]:
    """The keys of a command with several, by its name (those Plop could send)."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return [str(key) for key in args[3 : 3 + int(args[2])]]
    if name in ("MGET", "DEL", "EXISTS", "UNLINK", "TOUCH", "SUNION", "SINTER", "SDIFF"):
        return [str(key) for key in args[1:]]
    if name == "MSET":
        return [str(key) for key in args[1::2]]
    return []


def _refuse_cross_slot(args: tuple[Any, ...]) -> None:
    keys = _keys_of(args)
    if len({slot_of(key) for key in keys}) > 1:
        raise CrossSlot(f"{args[0]} - keys in several slots: {keys}")


class _SlotCheckingPipeline(Pipeline):
    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        _refuse_cross_slot(args)
        return super().execute_command(*args, **kwargs)


class SlotCheckingRedis(fakeredis.FakeAsyncRedis):
    """fakeredis that refuses cross-slot commands and keeps the scripts registered."""

    def __init__(self) -> None:
        super().__init__(decode_responses=True)
        self.scripts: list[str] = []

    def register_script(self, script: Any) -> Any:
        self.scripts.append(str(script))
        return super().register_script(script)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        _refuse_cross_slot(args)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _SlotCheckingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


_CALL = re.compile(r"redis\.call\(\s*'(\w+)'\s*(?:,\s*([^,)]+))?")
_KEYS_LOOP = re.compile(r"for\s+\w+\s*,\s*(\w+)\s+in\s+ipairs\((\w+)\)")
# A local that is KEYS, or KEYS from a position on: ``local keys, argv = KEYS, ARGV``.
_KEYS_ALIAS = re.compile(r"local\s+(\w+)\s*,\s*\w+\s*=\s*(?:KEYS|\{\w+\(KEYS,\s*\d+\)\})\s*,")
_NO_KEY = {"TIME"}


def keys_not_from_keys(script: str) -> list[str]:
    """The calls of a Lua script whose key is not one of KEYS (one it built itself)."""
    lists = {"KEYS", *_KEYS_ALIAS.findall(script)}
    from_keys = {key for key, listed in _KEYS_LOOP.findall(script) if listed in lists}
    return [
        match.group(0)
        for match in _CALL.finditer(script)
        if match.group(1).upper() not in _NO_KEY
        and not re.fullmatch(r"KEYS\[\d+\]", (key := (match.group(2) or "").strip()))
        and key not in from_keys
    ]


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotCheckingRedis]:
    # The services split their work by slot as they do on a cluster.
    monkeypatch.setattr(redis_slots, "is_cluster", lambda redis: True)
    client = SlotCheckingRedis()
    yield client
    assert client.scripts, "no script was registered: the services were not driven"
    built = {script: keys_not_from_keys(script) for script in client.scripts}
    assert not {script: calls for script, calls in built.items() if calls}


class Published:
    def __init__(self) -> None:
        self.events: list[object] = []

    async def publish(self, event: object) -> bool:
        self.events.append(event)
        return True


def test_the_checks_can_fail() -> None:
    with pytest.raises(CrossSlot):
        _refuse_cross_slot(("EVALSHA", "sha", 2, "plop:a", "plop:b"))
    _refuse_cross_slot(("EVALSHA", "sha", 2, "x:{user:1}:a", "x:{user:1}:b"))
    built = """
local due = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, user in ipairs(due) do redis.call('DEL', ARGV[1] .. user) end
for _, key in ipairs(KEYS) do redis.call('DEL', key) end
"""
    assert keys_not_from_keys(built) == ["redis.call('DEL', ARGV[1] .. user"]


def test_keys_of_one_subject_share_a_slot_and_a_tag_cannot_be_broken_open() -> None:
    tag = hash_tag("user:65f0c0ffee")
    assert slot_of(f"plop:presence:{tag}:conns") == slot_of(f"plop:typing:{tag}:rooms")
    assert hash_tag("a}b") == "{a)b}"


async def test_sessions_keep_each_command_in_one_slot(redis: SlotCheckingRedis) -> None:
    store = SessionStore(redis, ttl_seconds=60, max_per_user=2)
    first, second = await store.create("u1", "agent"), await store.create("u1")
    third = await store.create("u1")
    assert third.ended == (session_id(first.token),)
    assert [record.session_id for record in await store.listed("u1")] == [
        session_id(third.token),
        session_id(second.token),
    ]
    info = await store.lookup(second.token)
    assert info is not None and info.user_id == "u1"
    assert await store.user_id_for(third.token) == "u1"
    assert await store.owner_of(session_id(second.token)) == "u1"
    await store.seen([session_id(second.token), session_id(third.token)])
    assert await store.live([session_id(each.token) for each in (first, second, third)]) == {
        session_id(second.token),
        session_id(third.token),
    }
    assert await store.end("u1", [session_id(second.token)]) == [session_id(second.token)]
    other = await store.create("u1")
    assert await store.end_all("u1", keep=session_id(other.token)) == [session_id(third.token)]
    await store.revoke(other.token)
    assert await store.listed("u1") == []


async def test_budgets_of_several_subjects_are_checked_and_spent_per_slot(
    redis: SlotCheckingRedis,
) -> None:
    limits = limits_from_settings(Settings(failed_log_in_per_username_limit=1))
    limiter = RateLimiter(redis, limits)
    per_user = (LimitName.FAILED_LOG_IN_PER_USERNAME, "alice")
    per_address = (LimitName.FAILED_LOG_IN_PER_ADDRESS, "10.0.0.1")
    await limiter.check(per_user, per_address)
    await limiter.spend(per_user, per_address)
    with pytest.raises(RateLimited) as refused:
        await limiter.check(per_address, per_user)
    # The budget that waits longest is named, whichever slot its key is in.
    assert str(refused.value).startswith("too many failed log-ins for this username")
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    await limiter.hit(LimitName.SEND_MESSAGE, "u1")


async def test_locks_of_several_names_are_taken_and_released_per_slot(
    redis: SlotCheckingRedis,
) -> None:
    locks = Locks(redis)
    names = [f"message:{index}" for index in range(8)]
    assert len({slot_of(f"lock:{name}") for name in names}) > 1
    async with locks.hold(names[3]), locks.hold_free(names) as taken:
        assert taken == [index for index in range(8) if index != 3]
        async with locks.hold_free(names) as none_free:
            assert none_free == []
    async with locks.hold_free(names) as all_free:
        assert all_free == list(range(8))


async def test_presence_changes_and_sweeps_keep_each_script_in_one_slot(
    redis: SlotCheckingRedis,
) -> None:
    published = Published()
    presence = PresenceService(
        redis,
        cast(Any, published),
        cast(Any, SimpleNamespace()),
        cast(Any, SimpleNamespace()),
        ttl_seconds=30,
        heartbeat_seconds=10,
        grace_seconds=0,
        sweep_seconds=2,
    )
    users = [str(PydanticObjectId()) for _ in range(5)]
    connections = [await presence.connected(user) for user in users]
    assert await presence.heartbeat() == 0
    assert all([await presence.is_connected(user) for user in users])
    for user, connection in zip(users, connections, strict=True):
        await presence.disconnected(user, connection)
    assert await presence.sweep() == len(users)
    assert await presence.sweep() == 0  # once only
    gone = [event for event in published.events if isinstance(event, PresenceChanged)]
    assert sorted(event.user_id for event in gone if event.status == OFFLINE) == sorted(users)
    assert (await presence.current(users[0])).status == OFFLINE


async def test_typing_starts_stops_and_expires_with_each_script_in_one_slot(
    redis: SlotCheckingRedis,
) -> None:
    published = Published()

    async def connected(user_id: str) -> bool:
        return False

    class Accounts:
        async def get_many(self, ids: list[PydanticObjectId]) -> dict[PydanticObjectId, Any]:
            return {}

    typing = TypingService(
        redis,
        cast(Any, published),
        cast(Any, Accounts()),
        connected,
        RateLimiter(redis, limits_from_settings(Settings())),
        expiry_seconds=0,
        rebroadcast_seconds=3,
        sweep_seconds=1,
    )
    user = cast(Any, SimpleNamespace(id=PydanticObjectId(), username="u", display_name="U"))
    rooms = [cast(Any, SimpleNamespace(id=PydanticObjectId(), members_tag=None)) for _ in range(3)]
    for room in rooms:
        await typing.set_typing(room, user, True)
    await typing.set_typing(rooms[0], user, False)
    await typing.socket_closed(user)  # ends the second and third
    await typing.set_typing(rooms[0], user, True)
    assert await typing.sweep() == 1  # expired at once
    changes = [event for event in published.events if isinstance(event, TypingChanged)]
    started, ended = [True] * 3, [False] * 3
    assert [change.typing for change in changes] == [*started, *ended, True, False]


async def test_tagged_keys_and_batched_reads_stay_in_one_slot_each(
    redis: SlotCheckingRedis,
) -> None:
    positions = EventPositions(redis)
    first = await positions.take(3)
    await positions.done(first)
    assert await positions.watermark() >= first
    turns = RedisRoomTurns(redis)
    room = PydanticObjectId()
    await turns.claim(room)
    await turns.stored(room, 2)
    keys = [f"plop:blocks:epoch:{index}" for index in range(20)]
    await redis.set(keys[7], "3")
    assert len(positions_by_slot(redis, keys)) > 1
    values = await read_many(redis, keys)
    assert values[7] == "3" and values.count(None) == 19
