"""Plop's configuration: one settings object, read from PLOP_* environment variables.

The three URLs pick the backends: ``memory://`` is the embedded, in-process stand-in
(zero setup, not durable, one instance only); ``mongodb://``, ``kafka://`` and
``redis://`` are the real services (``redis+cluster://h1:p1,h2:p2`` a Redis Cluster).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MEMORY_URL = "memory://"
DISK_STORAGE_URL = "file://"
MIN_SECRET_CHARS = 16

# The most distinct emoji a message may carry, whatever the setting: the query cost
# weighs Message.reactions by it (schema/cost.py), so it must be a real bound.
MAX_REACTION_GROUPS = 20


def _checked_origin(origin: str) -> str:
    """An origin as browsers send it (``https://app.example.com[:port]``), or ``*``."""
    if origin == "*":
        return origin
    parts = urlsplit(origin.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(
            f"PLOP_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
        )
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default_port) else f":{parts.port}"
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    return f"{parts.scheme}://{host}{port}"


def _default_data_dir() -> str:
    """Where the embedded default keeps files: the user's data directory (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "plop")


# Office documents people send each other, by the types browsers give them.
_OFFICE_TYPES = (
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)
# Images a browser shows inline (SVG is left out: it may carry scripts), PDF, plain
# text and office documents.
DEFAULT_UPLOAD_CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    *_OFFICE_TYPES,
)


class Settings(BaseSettings):
    """Everything an operator can set; nothing else in Plop reads the environment."""

    model_config = SettingsConfigDict(env_prefix="PLOP_", extra="ignore")

    mongo_url: str = MEMORY_URL
    broker_url: str = MEMORY_URL
    redis_url: str = MEMORY_URL
    # Where attachments and profile pictures are kept: ``s3://KEY:SECRET@host:port/bucket``
    # (any S3-compatible server: presigned SigV4 URLs, path-style), or ``file://`` (the
    # embedded default: files under data_dir, served by Plop itself at HMAC-signed URLs).
    storage_url: str = DISK_STORAGE_URL
    # The embedded default's files; a path of its own per instance.
    data_dir: str = Field(default_factory=_default_data_dir)
    # The address clients reach this server at, for the URLs Plop signs itself (the
    # embedded storage's). Unset: http://HOST:PORT as served.
    public_url: str | None = None
    # Signs the embedded storage's URLs. Unset: a random one per process (its URLs
    # then die with it; they are short-lived anyway).
    storage_signing_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))

    host: str = "127.0.0.1"
    port: int = 8000
    # The operator's endpoints, /metrics and /readyz, on a port of their own: when
    # set, the public port answers neither (404) and this one answers only them (and
    # /healthz), on loopback unless admin_host says otherwise. Unset, both are served
    # on the public port with the API.
    admin_port: int | None = Field(default=None, ge=1, le=65_535)
    admin_host: str = "127.0.0.1"
    # Names this process in logs and in its Kafka client id; unique per process.
    instance_id: str = Field(default_factory=lambda: secrets.token_hex(4))
    # Prefix of every Kafka topic; a deployment (or a test run) may keep its own.
    topic_prefix: str = "plop"
    # Partitions of each topic created at start-up (a room or user stays in one).
    topic_partitions: int = 8
    # Copies of each partition of the topics Plop creates, and how many of them must
    # hold a write before it counts (min.insync.replicas; unset: the broker's default).
    # 1 for one broker; 3 and 2 on a production cluster, so that one broker's loss
    # loses nothing and stops nothing. Existing topics are never altered: a difference
    # is logged at start-up.
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1)
    # Where traces go, over OTLP/HTTP: a collector's base URL (``http://host:4318``;
    # Jaeger, Tempo and the otel-collector all accept it there). Unset: no tracing
    # at all, and nothing of it on any request or event.
    otlp_endpoint: str | None = None
    # The ``service.name`` every span of this process carries (with ``instance_id``
    # as ``service.instance.id``).
    otlp_service_name: str = "plop"

    session_ttl_seconds: int = 30 * 24 * 3600
    # Live sessions per user: each holds a 30-day token (and its push devices); past
    # this, a new session ends the oldest ones first.
    max_sessions_per_user: int = Field(default=20, ge=1)

    # GraphQL limits: each is generous for a real client and cheap to check.
    max_query_depth: int = 12
    max_aliases: int = 30
    max_query_tokens: int = 2_000
    # The objects a result may hold, lists weighed by their page size (schema/cost.py):
    # an app's room list (20 rooms with their members and last message) costs about
    # 2,100; 30 aliases of 100 rooms with every member's presence cost 600,000.
    max_query_cost: int = 5_000
    max_request_bytes: int = 64 * 1024
    max_websocket_message_bytes: int = 64 * 1024
    # permessage-deflate, which browsers offer on every socket: off by default, as in
    # Centrifugo. Its zlib state took about 49 KiB per socket (a tracemalloc profile of
    # idle subscribed sockets) and a compression per frame per socket, for frames of a
    # few hundred bytes that gain little from it.
    websocket_compression: bool = False
    connection_init_timeout_seconds: float = 10.0
    max_subscriptions_per_connection: int = 100
    # Automatic persisted queries (Apollo's protocol): a client sends a document's
    # sha256 instead of its text once the server holds it. Documents are kept in Redis
    # for apq_ttl_seconds after their registration, each at most apq_max_document_bytes
    # (UTF-8), at most apq_max_documents in all (the oldest registrations go first);
    # this process keeps the apq_local_documents it used last, so that a hit seldom
    # costs a Redis round trip (a document never changes for its hash). Off, a hash
    # alone is answered PERSISTED_QUERY_NOT_SUPPORTED (Apollo's link then sends text).
    apq_enabled: bool = True
    apq_ttl_seconds: int = Field(default=24 * 3_600, ge=1)
    apq_max_document_bytes: int = Field(default=16 * 1024, ge=1)
    apq_max_documents: int = Field(default=10_000, ge=1)
    apq_local_documents: int = Field(default=512, ge=0)
    # A JSON manifest of trusted documents (Apollo's persisted-query manifest, or a map
    # of "sha256:<hash>" or "<hash>" to document): when set, only those documents run,
    # named by their hash or sent in full, on HTTP and both WebSocket subprotocols;
    # anything else is refused with PERSISTED_QUERY_NOT_ALLOWED, and nothing registers.
    trusted_documents: Path | None = None
    # GraphiQL at GET /graphql (a browser's Accept: text/html), and schema introspection
    # (`__schema`, `__type`); production may turn both off.
    graphiql: bool = True
    introspection: bool = True

    max_group_members: int = 1_000
    max_message_chars: int = 4_000
    max_client_id_chars: int = 64
    # Reactions: the distinct emoji one message may carry (a row of chips a client can
    # still show) and the emoji one member may put on one message.
    max_reaction_emoji_per_message: int = Field(default=20, ge=1, le=MAX_REACTION_GROUPS)
    max_reactions_per_user_per_message: int = Field(default=10, ge=1)
    # Sends to one room that one instance holds at once (queued behind the room's
    # writer or being stored by it, services.room_writer) before it answers
    # RATE_LIMITED: a room's writer stores a few thousand messages a second, so a
    # full queue is a client flood, not a busy room; each waiting send holds its text.
    room_send_queue: int = 512
    # Frames, and bytes of frames, a socket may have waiting to be written before it
    # counts as a slow consumer and is closed (1013); the client resumes with afterSeq.
    # The bytes bound memory: 1,000 frames of results up to ~100 KiB each would be
    # 100 MB for one socket. 4 MiB holds hundreds of ordinary message frames.
    socket_send_queue_frames: int = 1_000
    socket_send_queue_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # Events a subscriber may have waiting before it drops them and refills the gap
    # from the database instead.
    subscriber_queue_events: int = 256

    # How often a live room stream re-reads who is in the room even when no event
    # says it changed (a membership change whose event was lost): the longest a
    # leaver's open stream can outlive a broker outage.
    membership_check_seconds: float = 10.0

    # How long a send waits for the broker before leaving the message to the relay.
    publish_timeout_seconds: float = 3.0
    # How often the relay looks for stored messages that were never published, and
    # how old such a message must be before the relay takes it over. The relay looks
    # that often after a publish of this instance failed (and at start-up); while
    # every publish succeeds it looks only every relay_idle_interval_seconds, for
    # what another instance that crashed left behind: each look is a query over the
    # unpublished index (a scan on FerretDB).
    relay_interval_seconds: float = 1.0
    relay_grace_seconds: float = 2.0
    relay_idle_interval_seconds: float = 30.0
    # How often each instance looks for account deletions that began and did not
    # finish (the instance serving one died), and how old such a deletion must be
    # before it is taken over, so that one in progress is not run twice at once.
    account_deletion_interval_seconds: float = 30.0
    account_deletion_grace_seconds: float = 60.0
    # Every network wait of a backend call is bounded by this.
    backend_timeout_seconds: float = 5.0
    # Connections to Redis; a command waits for a free one (up to the timeout).
    redis_max_connections: int = 200
    # Connections to the MongoDB-protocol store (pymongo's maxPoolSize, unless the URL
    # sets it); a command waits for a free one. Bounded because FerretDB 1.x holds one
    # PostgreSQL connection while an update takes a second: with every instance's
    # connections added up, stay at most half of FerretDB's pool_max_conns (50 by
    # default), or enough updates at once deadlock it for good. Two cores of store
    # gain nothing from more commands in flight.
    mongo_max_connections: int = Field(default=16, ge=1)
    # The database's collections are sharded as models/shard_keys.py plans
    # (docs/scaling.md): the indexes only an unsharded collection keeps are not created.
    mongo_sharded: bool = False

    # Presence: a socket counts as alive for TTL unless its instance refreshes it
    # every heartbeat; OFFLINE waits out the grace period after the last socket
    # closes; the sweep publishes what expired. A dead instance's users go OFFLINE
    # within TTL + one sweep interval.
    presence_ttl_seconds: float = 30.0
    presence_heartbeat_seconds: float = 10.0
    presence_grace_seconds: float = 3.0
    presence_sweep_seconds: float = 2.0

    # Typing: a `typing: true` not refreshed within the expiry ends (everyone watching
    # gets `typing: false`, found by a sweep that often); a client repeating it is
    # re-broadcast at most once per rebroadcast interval, so a keystroke per
    # setTyping does not flood the room.
    typing_expiry_seconds: float = 6.0
    typing_rebroadcast_seconds: float = 3.0
    typing_sweep_seconds: float = 0.5

    # Push notifications. The worker runs inside every instance by default (the
    # instances share one consumer group); `plop push-worker` runs it on its own.
    push_worker_enabled: bool = True
    # The push workers' Kafka consumer group; by default the topic prefix's ("<prefix>.push"),
    # shared by every instance and `plop push-worker` of a deployment. A second, separate
    # set of workers on the same topics names its own: a new group starts at the newest
    # events, where a known one first works through everything since it was last left.
    push_group: str | None = None
    push_fcm_service_account_file: str | None = None
    push_fcm_base_url: str = "https://fcm.googleapis.com"
    push_webhook_url: str | None = None
    push_webhook_secret: str | None = None
    push_timeout_seconds: float = 10.0
    push_max_attempts: int = 6
    push_backoff_base_seconds: float = 0.5
    push_backoff_max_seconds: float = 30.0
    # The longest a provider's Retry-After may hold a push back; pushes wait in line
    # per partition, so an unbounded hint would stall all of them.
    push_retry_after_max_seconds: float = 300.0
    # A message older than this when its push is decided is not pushed: a worker that
    # comes back after an outage does not wake a phone for what is hours old (the app
    # shows it from history when opened).
    push_max_age_seconds: float = Field(default=3_600.0, gt=0)

    # Abuse limits: each is "COUNT calls at once, refilled evenly over SECONDS", per
    # subject, kept in Redis and so shared by every instance. Far above what a person
    # does, well below what a script does.
    # sendMessage per user: a burst of 120, then 20 a second.
    send_message_limit: int = 120
    send_message_limit_seconds: float = 6.0
    # Registrations of persisted queries (a document sent with its hash and not yet
    # held) per client address: an app registers a few dozen documents once.
    persist_query_limit: int = 60
    persist_query_limit_seconds: float = 60.0
    # setTyping per user (for the typing mutation): 10 at once, then 2 a second.
    set_typing_limit: int = 10
    set_typing_limit_seconds: float = 5.0
    # createDirectRoom and createGroupRoom together, per user.
    create_room_limit: int = 30
    create_room_limit_seconds: float = 60.0
    invite_members_limit: int = 60
    invite_members_limit_seconds: float = 60.0
    # Group invitations (createGroupRoom and inviteMembers naming a user who is not a
    # friend), per inviter, one per invited user: each lands in a stranger's list.
    room_invitation_limit: int = 50
    room_invitation_limit_seconds: float = 3_600.0
    # How long an invitation waits for an answer before it is dead.
    room_invitation_ttl_seconds: float = Field(default=7 * 24 * 3_600.0, gt=0)
    # How long a sync token (a sync's nextToken, an account event's token) stays good:
    # the room event log is kept this long, and an older token answers
    # SYNC_TOKEN_EXPIRED (the client starts over with sync). At least a day.
    sync_retention_seconds: float = Field(default=7 * 24 * 3_600.0, ge=24 * 3_600.0)
    # Events one catch-up of the account stream replays at most: a token further
    # behind than this is expired too (sync gives the rooms as they stand instead).
    sync_max_replay_events: int = Field(default=10_000, ge=100)
    # After a decline (or a block of the inviter), how long before the same inviter may
    # invite the same user again, to any room.
    room_invitation_cooldown_seconds: float = 7 * 24 * 3_600.0
    # muteRoom and unmuteRoom together, per user.
    mute_room_limit: int = 30
    mute_room_limit_seconds: float = 60.0
    # addReaction and removeReaction together, per user: each one is an event to
    # every member's open roomActivity, so a flood costs the whole room.
    react_limit: int = 60
    react_limit_seconds: float = 60.0
    # Uploads: createUpload per user (each may store up to upload_max_bytes), the
    # largest file, the bytes one user may keep stored (attachments and profile
    # pictures), and the content types taken (a comma-separated or JSON list).
    create_upload_limit: int = 60
    create_upload_limit_seconds: float = 3_600.0
    upload_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    upload_quota_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    upload_content_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_UPLOAD_CONTENT_TYPES)
    )
    # How long an upload ticket may be used, and a download URL stays good.
    upload_ticket_seconds: float = Field(default=600.0, gt=0)
    download_url_seconds: float = Field(default=900.0, gt=0)
    # An upload neither attached to a message nor made a profile picture within this
    # is deleted, with its object; the clean-up looks every interval.
    upload_orphan_seconds: float = Field(default=24 * 3_600.0, gt=0)
    upload_cleanup_interval_seconds: float = Field(default=300.0, gt=0)
    # updateProfile per user: a new picture replaces (and deletes) the last one.
    update_profile_limit: int = 30
    update_profile_limit_seconds: float = 3_600.0
    send_friend_request_limit: int = 30
    send_friend_request_limit_seconds: float = 3_600.0
    # After a decline, how long before the same user may ask the same user again.
    friend_request_cooldown_seconds: float = 24 * 3_600.0
    # Failed logIns (failures only: a right password costs nothing), per username and
    # per client address; past either, logIn answers RATE_LIMITED even for the right
    # password until the budget refills.
    failed_log_in_per_username_limit: int = 10
    failed_log_in_per_username_limit_seconds: float = 15 * 60.0
    failed_log_in_per_address_limit: int = 100
    failed_log_in_per_address_limit_seconds: float = 15 * 60.0
    sign_up_per_address_limit: int = 20
    sign_up_per_address_limit_seconds: float = 3_600.0
    # Successful logIns per username and per client address: each costs an argon2
    # hash and stores a session for session_ttl_seconds.
    log_in_per_username_limit: int = 20
    log_in_per_username_limit_seconds: float = 3_600.0
    log_in_per_address_limit: int = 200
    log_in_per_address_limit_seconds: float = 3_600.0
    # editMessage and deleteMessage per user: each reaches every member's roomUpdated
    # and roomActivity, as a message does, at a pace no person edits at.
    edit_message_limit: int = 30
    edit_message_limit_seconds: float = 60.0
    delete_message_limit: int = 30
    delete_message_limit_seconds: float = 60.0
    # markRead per user: a client marks as it scrolls, a couple a second at most.
    mark_read_limit: int = 60
    mark_read_limit_seconds: float = 30.0
    # searchUsers per user: each is an index scan; a client searches as one types.
    search_users_limit: int = 30
    search_users_limit_seconds: float = 30.0
    # searchMessages per user: each reads the rooms' matching messages; a client
    # searches as one types, a few a second at most.
    search_messages_limit: int = 30
    search_messages_limit_seconds: float = 30.0
    # sync per user: each reads every room of the account; an app syncs as it starts
    # or comes back online, a few times a minute at most.
    sync_limit: int = 30
    sync_limit_seconds: float = 60.0
    # The longest searchMessages query: a few sentences, which every message must hold
    # word for word.
    max_search_query_chars: int = Field(default=200, ge=1)
    # registerPushDevice per user: a device registers once per session or token change.
    register_push_device_limit: int = 10
    register_push_device_limit_seconds: float = 600.0
    # leaveRoom per user: each tells every member of the room.
    leave_room_limit: int = 30
    leave_room_limit_seconds: float = 60.0
    # updateRoom, removeMember and setMemberRole per user: each tells every member of
    # the room, and a removal ends the removed member's streams on every instance.
    update_room_limit: int = 30
    update_room_limit_seconds: float = 60.0
    remove_member_limit: int = 60
    remove_member_limit_seconds: float = 60.0
    set_member_role_limit: int = 30
    set_member_role_limit_seconds: float = 60.0
    # blockUser and unblockUser together, per user: each ends a friendship, declines
    # requests and moves the block epoch every instance reads.
    block_user_limit: int = 30
    block_user_limit_seconds: float = 60.0
    # changePassword and deleteAccount per user: each costs an argon2 check (and a
    # hash), and a wrong password also spends the failed-logIn budgets.
    change_password_limit: int = 5
    change_password_limit_seconds: float = 3_600.0
    delete_account_limit: int = 5
    delete_account_limit_seconds: float = 3_600.0
    # endSession per user: each tells every instance to close the session's sockets.
    end_session_limit: int = 30
    end_session_limit_seconds: float = 60.0
    # Peers (IPs or networks, comma-separated) whose X-Forwarded-For names the client:
    # the load balancer's. Anyone else could forge the header, so by default nobody.
    forwarded_allow_ips: str = ""
    # Per-address limits count an IPv6 client as its network of this many bits: an
    # ISP hands a subscriber a whole /64 (RFC 6177), whose addresses are its to pick.
    ipv6_prefix_length: int = Field(default=64, ge=32, le=128)
    # argon2 hashing (64 MiB and tens of ms each) runs on these threads only, with at
    # most this many more waiting; past that logIn and signUp are refused at once.
    password_hash_threads: int = 2
    password_hash_queue: int = 16
    # argon2id's cost per hash: passes over memory, and KiB of memory (the defaults
    # are argon2's recommended ones; cheaper hashes are cheaper to guess too).
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=8_192, le=1_048_576)
    # Open sockets per user and per client address on THIS instance (counted in
    # process, not shared): a load balancer spreading one user over N instances
    # allows N times as many.
    max_sockets_per_user: int = 20
    max_sockets_per_address: int = 200

    # A stop (SIGTERM) ends the process within shutdown_seconds, whatever hangs. For
    # the first shutdown_notice_seconds of it (at most half) /readyz answers 503 and
    # new sockets are refused while the open ones still stream, so that a load
    # balancer moves new clients before the open sockets close with 1012.
    shutdown_seconds: float = Field(default=10.0, gt=0)
    shutdown_notice_seconds: float = Field(default=1.0, ge=0)

    # Measuring only: trace allocations and write a profile here on each SIGUSR1
    # (observability/alloc_profile.py); tracing slows every allocation.
    tracemalloc_dir: Path | None = None

    log_level: str = "INFO"
    # text: one readable line per record; json: one JSON object per line.
    log_format: Literal["text", "json"] = "text"

    # Origins whose pages may call the API from a browser (CORS, and WebSocket
    # handshakes): a comma-separated or JSON list; "*" allows any origin, but then
    # no credentials. None by default: only same-origin pages and non-browser clients.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_from_a_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            parsed = json.loads(text) if text.startswith("[") else text.split(",")
            value = [str(item).strip() for item in parsed if str(item).strip()]
        if isinstance(value, list):
            return [_checked_origin(str(origin)) for origin in value]
        return value

    @field_validator("upload_content_types", mode="before")
    @classmethod
    def _content_types_from_a_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            parsed = json.loads(text) if text.startswith("[") else text.split(",")
            value = [str(item).strip().lower() for item in parsed if str(item).strip()]
        return value

    @model_validator(mode="after")
    def _webhook_needs_a_real_secret(self) -> Settings:
        if self.push_webhook_url and len(self.push_webhook_secret or "") < MIN_SECRET_CHARS:
            raise ValueError(
                f"PLOP_PUSH_WEBHOOK_SECRET must be at least {MIN_SECRET_CHARS} characters "
                "when PLOP_PUSH_WEBHOOK_URL is set"
            )
        return self

    @property
    def embedded_backends(self) -> list[str]:
        """The names of the settings that point at an in-process stand-in."""
        urls = {
            "PLOP_MONGO_URL": self.mongo_url,
            "PLOP_BROKER_URL": self.broker_url,
            "PLOP_REDIS_URL": self.redis_url,
        }
        return [name for name, url in urls.items() if urlsplit(url).scheme == "memory"]

    def topic(self, name: str) -> str:
        """The full Kafka topic name of one of Plop's topics."""
        return f"{self.topic_prefix}.{name}"
