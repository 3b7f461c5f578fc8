"""How each collection would be split on a sharded MongoDB cluster: its shard key, or
why it stays on the primary shard. Nothing here changes how Plop runs today; it is
the plan that docs/scaling.md explains and tests/test_shard_readiness.py holds the
models and the services' queries to.

A shard key is one field, range-sharded. A unique index of a sharded collection
must start with it (MongoDB refuses to shard a collection otherwise, and could not
check the uniqueness across shards), and a hot query names it, so that the router
sends it to the one shard that holds the answer instead of to every shard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardKey:
    field: str
    why: str


@dataclass(frozen=True)
class AcceptedScatter:
    """A query on a sharded collection that goes to every shard, on purpose: it is
    answered by an index on each shard, and it is either rare (an account's deletion,
    a retried send) or has nothing else to go by (the API names a message by id)."""

    collection: str
    # The query's top-level fields (those of each ``$or`` branch too), sorted.
    fields: tuple[str, ...]
    why: str


# Collections to shard, by collection name.
SHARD_KEYS: dict[str, ShardKey] = {
    "messages": ShardKey(
        "room_id",
        "the biggest collection; history, paging, catch-up and the send path's "
        "(room_id, seq) insert are all per room, so one room's messages stay on one shard",
    ),
    "room_progress": ShardKey(
        "_id",
        "one small document per room (its id is the room's), updated by every send: "
        "spread by room so the writes spread with the rooms",
    ),
    "memberships": ShardKey(
        "room_id",
        "one document per member and room; every read names its room (a viewer's "
        "markers and mutes name the rooms they are asked for), and the push worker "
        "asks per room",
    ),
    "reactions": ShardKey(
        "message_id",
        "every read and write names the message (a page of messages asks for their "
        "ids); its unique (message, user, emoji) index starts with it",
    ),
    "friendships": ShardKey(
        "owner_id",
        "one document per side of a friendship: 'my friends' and 'are we friends' name the owner",
    ),
}

# Collections that stay whole on one shard (the database's primary shard), and why.
UNSHARDED: dict[str, str] = {
    "users": "one small document per account; a username is unique across all "
    "accounts, which only an unsharded collection (or one sharded by username, "
    "while every request reads an account by id) can check",
    "rooms": "one document per room, read by id and by member; a direct room's "
    "pair_key is unique across all rooms",
    "friend_requests": "a few documents per user; one pending request per direction "
    "is a unique open_key across all users",
    "push_devices": "a few documents per user; a device token belongs to one account "
    "at a time, a unique token_hash across all users",
    "blocks": "rare, a few per user; the push worker asks who blocks a sender, which "
    "would go to every shard of a collection sharded by blocker",
    "room_invitations": "pending invitations only: answered or expired ones go",
    "uploads": "one document per file, far fewer than messages; read by message, by "
    "owner and by the clean-up's state, no one of which would serve every query",
    "room_events": "changes other than new messages, kept only "
    "PLOP_SYNC_RETENTION_SECONDS; catch-up asks by the viewer's rooms or the viewer "
    "personally in one query, which no one shard key would answer from one shard",
}

# Unique indexes of sharded collections that do not start with the shard key, kept
# only while the collection is not sharded, each with the index that takes its place
# once it is (created beside it already, so sharding needs only the drop).
DROPPED_WHEN_SHARDED: dict[tuple[str, str], tuple[str, str]] = {
    ("messages", "idempotency_unique"): (
        "room_idempotency_unique",
        "a sender's clientId is unique across rooms while unsharded (a reuse in "
        "another room is refused as CONFLICT); sharded, it is unique per room: a "
        "retry goes to the room of its first try, so the retry still finds its copy",
    ),
}

ACCEPTED_SCATTERS: tuple[AcceptedScatter, ...] = (
    AcceptedScatter(
        "messages",
        ("_id",),
        "editMessage, deleteMessage and reactions name a message by id only; each "
        "shard answers from its _id index",
    ),
    AcceptedScatter(
        "messages",
        ("_id", "deleted"),
        "an edit or delete of a message named by id, guarded against a delete",
    ),
    AcceptedScatter(
        "messages",
        ("idempotency_key",),
        "a send whose insert was refused looks up its earlier copy: only on a retry",
    ),
    AcceptedScatter(
        "messages",
        ("created_at", "published"),
        "the relay's background look for messages left unpublished",
    ),
    AcceptedScatter(
        "messages",
        ("update_published", "updated_at"),
        "the relay's background look for edits left unpublished",
    ),
    AcceptedScatter(
        "messages",
        ("deleted", "sender_id"),
        "an account's deletion removes its messages in every room",
    ),
    AcceptedScatter(
        "messages",
        ("deleted", "search_tokens"),
        "the start-up backfill of search words",
    ),
    AcceptedScatter(
        "messages",
        ("pos",),
        "account streams catching up near the event watermark share one read of each "
        "span of positions, of every room (services/recent_room_events.py): one "
        "scatter per span and instance, not one query per stream",
    ),
    AcceptedScatter(
        "friendships",
        ("friend_id", "owner_id"),
        "an account's deletion ends its friendships both ways (an $or of owner and friend)",
    ),
)
