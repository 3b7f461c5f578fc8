"""``Services``: what resolvers reach through ``info.context.services``, built in one place.

Building opens nothing and starts nothing: the process's composition (``app.runtime``)
opens the backends, hands them here, and runs the background work.
"""

from __future__ import annotations

from dataclasses import dataclass

from auth.passwords import PasswordHashing
from auth.sessions import SessionStore
from backends.object_storage import ObjectStorage
from backends.redis import KeyValueStore
from live.hub import FanoutHub
from live.room_lists import RoomLists
from models import RoomDoc
from models.push import PushPlatform
from services.account_deletion import AccountDeletion
from services.account_history import AccountStreams, StoredAccountHistory
from services.accounts import AccountService
from services.blocks import BlockService
from services.devices import DeviceService
from services.event_positions import EventPositions
from services.friends import FriendService
from services.invitations import InvitationService
from services.locks import Locks
from services.membership_cache import MembershipCache
from services.message_search import MessageSearch
from services.message_store import MongoMessageInserts
from services.messages import MessageService
from services.mutes import MuteService
from services.persisted_documents import PersistedDocuments
from services.persisted_query_store import PersistedQueryStore
from services.presence import PresenceService
from services.profiles import ProfileService
from services.publisher import EventPublisher
from services.rate_limits import RateLimiter, limits_from_settings
from services.reactions import ReactionService
from services.relay import MessageRelay
from services.room_access import RoomAccess
from services.room_event_log import RoomEventLog
from services.room_history import StoredRoomHistory
from services.room_turns import RedisRoomTurns
from services.room_writer import RoomWriters
from services.rooms import RoomService, room_with_hint
from services.script_batches import ScriptBatches
from services.socket_caps import SocketCaps
from services.sync import SyncService
from services.sync_tokens import SyncTokens
from services.trusted_documents import load_trusted_documents
from services.typing import TypingService
from services.uploads import UploadRules, UploadService
from settings import Settings

# Membership checks per look of an account stream at its viewer's rooms.
ACCOUNT_LOOK_FACTOR = 6


@dataclass(frozen=True, slots=True)
class Services:
    """The services of one process; the rules live in each."""

    settings: Settings
    accounts: AccountService
    deletions: AccountDeletion
    rooms: RoomService
    messages: MessageService
    search: MessageSearch
    relay: MessageRelay
    access: RoomAccess
    room_history: StoredRoomHistory
    room_lists: RoomLists[RoomDoc]
    friends: FriendService
    presence: PresenceService
    devices: DeviceService
    blocks: BlockService
    invitations: InvitationService
    mutes: MuteService
    reactions: ReactionService
    limits: RateLimiter
    sockets: SocketCaps
    typing: TypingService
    uploads: UploadService
    profiles: ProfileService
    event_log: RoomEventLog
    sync_tokens: SyncTokens
    account_streams: AccountStreams
    sync: SyncService
    persisted_documents: PersistedDocuments

    @classmethod
    def build(
        cls,
        settings: Settings,
        redis: KeyValueStore,
        publisher: EventPublisher,
        hub: FanoutHub,
        push_platforms: frozenset[PushPlatform],
        passwords: PasswordHashing,
        storage: ObjectStorage,
    ) -> Services:
        limits = RateLimiter(redis, limits_from_settings(settings))
        sessions = SessionStore(redis, settings.session_ttl_seconds, settings.max_sessions_per_user)
        devices = DeviceService(push_platforms, sessions, limits)
        accounts = AccountService(sessions, publisher, hub, passwords, limits, devices)
        friends = FriendService(publisher, limits)
        # Shared by the event positions and the room writers' turns, so that a writer's
        # calls to both go out in one pipeline.
        writer_calls = ScriptBatches(redis)
        event_log = RoomEventLog(
            EventPositions(redis, batches=writer_calls), settings.sync_retention_seconds
        )
        invitations = InvitationService(
            limits, settings.room_invitation_ttl_seconds, publisher, event_log
        )
        blocks = BlockService(redis, friends, invitations, limits)
        locks = Locks(redis)
        access = RoomAccess(
            MembershipCache(hub, settings.membership_check_seconds), blocks, room_with_hint
        )
        rooms = RoomService(
            publisher,
            settings.max_group_members,
            limits,
            locks,
            access,
            friends,
            invitations,
            event_log,
        )
        uploads = UploadService(storage, limits, locks, _upload_rules(settings))
        relay = MessageRelay(
            publisher,
            locks,
            grace_seconds=settings.relay_grace_seconds,
            interval_seconds=settings.relay_interval_seconds,
            idle_interval_seconds=settings.relay_idle_interval_seconds,
        )
        messages = MessageService(
            relay,
            access,
            settings.max_message_chars,
            settings.max_client_id_chars,
            limits,
            RoomWriters(
                MongoMessageInserts(rooms),
                RedisRoomTurns(redis, writer_calls),
                settings.room_send_queue,
                event_log.positions,
            ),
            uploads,
            event_log,
        )
        presence = PresenceService(
            redis,
            publisher,
            hub,
            friends,
            ttl_seconds=settings.presence_ttl_seconds,
            heartbeat_seconds=settings.presence_heartbeat_seconds,
            grace_seconds=settings.presence_grace_seconds,
            sweep_seconds=settings.presence_sweep_seconds,
            namespace=settings.topic_prefix,
        )
        typing = TypingService(
            redis,
            publisher,
            accounts,
            presence.is_connected,
            limits,
            expiry_seconds=settings.typing_expiry_seconds,
            rebroadcast_seconds=settings.typing_rebroadcast_seconds,
            sweep_seconds=settings.typing_sweep_seconds,
            namespace=settings.topic_prefix,
        )
        deletions = AccountDeletion(
            accounts,
            devices,
            friends,
            blocks,
            invitations,
            rooms,
            messages,
            limits,
            uploads,
            grace_seconds=settings.account_deletion_grace_seconds,
            interval_seconds=settings.account_deletion_interval_seconds,
        )
        room_history = StoredRoomHistory(messages, accounts, access)
        sync_tokens = SyncTokens(redis, settings.sync_retention_seconds)
        return cls(
            settings=settings,
            accounts=accounts,
            deletions=deletions,
            rooms=rooms,
            messages=messages,
            search=MessageSearch(
                relay,
                limits,
                settings.max_search_query_chars,
                real_store="PLOP_MONGO_URL" not in settings.embedded_backends,
            ),
            relay=relay,
            access=access,
            room_history=room_history,
            room_lists=RoomLists(hub, room_history),
            friends=friends,
            presence=presence,
            devices=devices,
            blocks=blocks,
            invitations=invitations,
            mutes=MuteService(limits),
            reactions=ReactionService(
                access,
                publisher,
                limits,
                event_log,
                max_emoji_per_message=settings.max_reaction_emoji_per_message,
                max_per_user_per_message=settings.max_reactions_per_user_per_message,
            ),
            limits=limits,
            sockets=SocketCaps(settings.max_sockets_per_user, settings.max_sockets_per_address),
            typing=typing,
            uploads=uploads,
            profiles=ProfileService(accounts, uploads, limits),
            event_log=event_log,
            sync_tokens=sync_tokens,
            account_streams=AccountStreams(
                hub,
                StoredAccountHistory(event_log.positions, accounts, room_history),
                sync_tokens,
                limits,
                # A look at each viewer's rooms, for joins and leaves whose events
                # were lost: every message is authorized by its membership tag
                # anyway, so the look can be rarer than a room stream's recheck.
                ACCOUNT_LOOK_FACTOR * settings.membership_check_seconds,
                settings.sync_max_replay_events,
            ),
            sync=SyncService(
                event_log.positions,
                sync_tokens,
                invitations,
                limits,
                settings.sync_max_replay_events,
            ),
            persisted_documents=_persisted_documents(settings, redis, limits),
        )


def _persisted_documents(
    settings: Settings, redis: KeyValueStore, limits: RateLimiter
) -> PersistedDocuments:
    store = PersistedQueryStore(
        redis,
        ttl_seconds=settings.apq_ttl_seconds,
        max_documents=settings.apq_max_documents,
        local_documents=settings.apq_local_documents,
        namespace=settings.topic_prefix,
    )
    trusted = (
        None
        if settings.trusted_documents is None
        else load_trusted_documents(settings.trusted_documents)
    )
    return PersistedDocuments(
        store,
        limits,
        enabled=settings.apq_enabled,
        max_document_bytes=settings.apq_max_document_bytes,
        trusted=trusted,
    )


def _upload_rules(settings: Settings) -> UploadRules:
    return UploadRules(
        max_bytes=settings.upload_max_bytes,
        quota_bytes=settings.upload_quota_bytes,
        content_types=frozenset(settings.upload_content_types),
        ticket_seconds=settings.upload_ticket_seconds,
        download_seconds=settings.download_url_seconds,
        orphan_seconds=settings.upload_orphan_seconds,
        cleanup_interval_seconds=settings.upload_cleanup_interval_seconds,
    )
