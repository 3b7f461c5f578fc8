"""The one Schema: root types wired to resolvers, with limits and error codes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.types import ExecutionResult
from strawberry.types.execution import ExecutionContext
from strawberry.types.graphql import OperationType

from observability.logs import LogFields
from resolvers import account_events as account_event_resolvers
from resolvers import account_fields as account_resolvers
from resolvers import block_fields as block_resolvers
from resolvers import friend_fields as friend_resolvers
from resolvers import invitation_fields as invitation_resolvers
from resolvers import message_fields as message_resolvers
from resolvers import push_fields as push_resolvers
from resolvers import reaction_fields as reaction_resolvers
from resolvers import room_fields as room_resolvers
from resolvers import searches as search_resolvers
from resolvers import subscriptions as subscription_resolvers
from resolvers import sync_fields as sync_resolvers
from resolvers import upload_fields as upload_resolvers
from schema.documents import DocumentRules
from schema.errors import ErrorCodes, with_code
from schema.execution import PlopExecutionContext, has_lone_surrogate
from schema.files import UploadTicket
from schema.operation_metrics import OperationMetrics, RoundTripScope
from schema.operation_spans import OperationSpans
from schema.sync_types import SyncResult
from schema.types import (
    AuthPayload,
    FriendRequest,
    Message,
    MessageConnection,
    PushDevice,
    Room,
    RoomConnection,
    RoomInvitation,
    Session,
    User,
)
from settings import Settings

# Parsed and validated documents kept per process: apps send a few documents many times.
DOCUMENT_CACHE_SIZE = 1_024


@strawberry.type
class Query:
    me: User = strawberry.field(resolver=account_resolvers.me)
    user: User | None = strawberry.field(resolver=account_resolvers.user)
    search_users: list[User] = strawberry.field(
        resolver=friend_resolvers.search_users,
        description="Case-insensitive prefix match on username or displayName.",
    )
    friends: list[User] = strawberry.field(resolver=friend_resolvers.friends)
    friend_requests: list[FriendRequest] = strawberry.field(
        resolver=friend_resolvers.friend_requests,
        description="Pending requests the viewer sent or received.",
    )
    blocked_users: list[User] = strawberry.field(
        resolver=block_resolvers.blocked_users, description="Users the viewer blocked."
    )
    rooms: RoomConnection = strawberry.field(
        resolver=room_resolvers.rooms, description="The viewer's rooms, most recent activity first."
    )
    room: Room | None = strawberry.field(
        resolver=room_resolvers.room,
        description="FORBIDDEN unless the viewer is a member; NOT_FOUND if no such room.",
    )
    sessions: list[Session] = strawberry.field(
        resolver=account_resolvers.sessions, description="The viewer's sessions, newest first."
    )
    messages: MessageConnection = strawberry.field(
        resolver=message_resolvers.messages,
        description=(
            "History, Relay-style, edges in ascending seq order. With no paging arguments: "
            "the newest 50. `last`+`before` pages back, `first`+`after` pages forward. "
            "Page size at most 100."
        ),
    )
    search_messages: MessageConnection = strawberry.field(
        resolver=search_resolvers.search_messages,
        description=(
            "v1.2. Messages containing every word of `query` (case- and accent-insensitive), "
            "newest first, in one room or (roomId null) in every room the viewer is in. "
            "Deleted messages never match; a room the viewer is not in is FORBIDDEN."
        ),
    )
    room_invitations: list[RoomInvitation] = strawberry.field(
        resolver=invitation_resolvers.room_invitations,
        description="v1.2. Group invitations waiting for the viewer's answer.",
    )
    sync: SyncResult = strawberry.field(
        resolver=sync_resolvers.sync,
        description=(
            "v1.2. Everything that happened in the viewer's rooms after `since`, in one call "
            "(with no `since`: the viewer's rooms with their newest messages). Rooms most "
            "recent first, at most `rooms` (1-200); messages per room at most "
            "`messagesPerRoom` (0-100)."
        ),
    )


@strawberry.type
class Mutation:
    sign_up: AuthPayload = strawberry.mutation(resolver=account_resolvers.sign_up)
    log_in: AuthPayload = strawberry.mutation(resolver=account_resolvers.log_in)
    log_out: bool = strawberry.mutation(resolver=account_resolvers.log_out)

    send_friend_request: FriendRequest = strawberry.mutation(
        resolver=friend_resolvers.send_friend_request
    )
    respond_to_friend_request: FriendRequest = strawberry.mutation(
        resolver=friend_resolvers.respond_to_friend_request
    )
    remove_friend: bool = strawberry.mutation(
        resolver=friend_resolvers.remove_friend,
        description="Ends the friendship both ways; presence stops flowing both ways.",
    )
    block_user: bool = strawberry.mutation(
        resolver=block_resolvers.block_user,
        description=(
            "A blocked user cannot open a DM with the viewer, add or invite them to a group, "
            "or send them a friend request (FORBIDDEN); blocking ends a friendship and "
            "presence both ways, and the viewer gets no push for the blocked user's messages. "
            "Idempotent."
        ),
    )
    unblock_user: bool = strawberry.mutation(resolver=block_resolvers.unblock_user)

    create_direct_room: Room = strawberry.mutation(
        resolver=room_resolvers.create_direct_room,
        description=(
            "Idempotent: returns the existing DIRECT room of the two users if there is one."
        ),
    )
    create_group_room: Room = strawberry.mutation(resolver=room_resolvers.create_group_room)
    invite_members: Room = strawberry.mutation(
        resolver=room_resolvers.invite_members,
        description=(
            "Any member of a GROUP room may invite; invitees get roomAdded. v1.2: an invitee "
            "who is not a friend of the inviter gets a RoomInvitation instead (same for "
            "createGroupRoom's memberIds) and joins only by accepting it."
        ),
    )
    leave_room: bool = strawberry.mutation(
        resolver=room_resolvers.leave_room,
        description=(
            "v1.2: in a DIRECT room it hides the room from the viewer's lists until a new "
            "message arrives."
        ),
    )
    respond_to_room_invitation: Room | None = strawberry.mutation(
        resolver=invitation_resolvers.respond_to_room_invitation,
        description="v1.2. Accepting joins the room (returns it); declining returns null.",
    )
    mute_room: Room = strawberry.mutation(
        resolver=room_resolvers.mute_room,
        description=(
            "v1.2. No push for the room until `until` (null: until unmuted); mentions still "
            "push. BAD_USER_INPUT for a time not in the future or more than 366 days ahead."
        ),
    )
    unmute_room: Room = strawberry.mutation(resolver=room_resolvers.unmute_room)
    update_room: Room = strawberry.mutation(
        resolver=room_resolvers.update_room, description="v1.2. OWNER or ADMIN of a GROUP room."
    )
    remove_member: Room = strawberry.mutation(
        resolver=room_resolvers.remove_member,
        description=(
            "v1.2. OWNER or ADMIN; an ADMIN removes MEMBERs only; nobody removes the OWNER. "
            "The removed member's subscriptions to the room end FORBIDDEN at once."
        ),
    )
    set_member_role: Room = strawberry.mutation(
        resolver=room_resolvers.set_member_role,
        description=(
            "v1.2. OWNER only: ADMIN or MEMBER for another member; OWNER hands ownership over "
            "(the old owner becomes ADMIN). When the OWNER leaves, the oldest ADMIN (else the "
            "oldest member) owns."
        ),
    )
    send_message: Message = strawberry.mutation(
        resolver=message_resolvers.send_message,
        description=(
            "Idempotent per (viewer, clientId): a retry returns the first Message, "
            "never a second one. v1.2: replyToId names a message of the same room; "
            "attachmentIds name uploads of the viewer (createUpload) that reached storage; "
            'text may be "" when attachments are given.'
        ),
    )
    create_upload: UploadTicket = strawberry.mutation(
        resolver=upload_resolvers.create_upload,
        description=(
            "v1.2. Reserves an upload into a room the viewer is in; BAD_USER_INPUT over the "
            "size limit or for a content type the server does not take. The ticket expires "
            "in minutes."
        ),
    )
    update_profile: User = strawberry.mutation(
        resolver=upload_resolvers.update_profile,
        description="v1.2. avatarUploadId: an image upload of the viewer's that reached storage.",
    )
    edit_message: Message = strawberry.mutation(
        resolver=message_resolvers.edit_message, description="Sender only."
    )
    delete_message: Message = strawberry.mutation(
        resolver=message_resolvers.delete_message,
        description="Sender only; keeps the seq, clears the text.",
    )
    add_reaction: Message = strawberry.mutation(
        resolver=reaction_resolvers.add_reaction,
        description="v1.2. Exactly one emoji. Idempotent: a second identical reaction counts once.",
    )
    remove_reaction: Message = strawberry.mutation(resolver=reaction_resolvers.remove_reaction)
    set_typing: bool = strawberry.mutation(
        resolver=room_resolvers.set_typing, description="Ephemeral: fanned out, never stored."
    )
    register_push_device: PushDevice = strawberry.mutation(
        resolver=push_resolvers.register_push_device
    )
    unregister_push_device: bool = strawberry.mutation(
        resolver=push_resolvers.unregister_push_device
    )
    mark_read: Room = strawberry.mutation(
        resolver=room_resolvers.mark_read,
        description="Moves the viewer's read marker forward (never back).",
    )
    change_password: bool = strawberry.mutation(
        resolver=account_resolvers.change_password,
        description=(
            "Ends every other session of the viewer (their sockets close); this one stays. "
            "A wrong currentPassword is FORBIDDEN and counts as a failed logIn."
        ),
    )
    end_session: bool = strawberry.mutation(
        resolver=account_resolvers.end_session,
        description=(
            "Ends one of the viewer's sessions; its sockets close and its push devices go. "
            "NOT_FOUND for any id that is not one of the viewer's live sessions."
        ),
    )
    delete_account: bool = strawberry.mutation(
        resolver=account_resolvers.delete_account,
        description=(
            "Deletes the viewer's account: every session ends, devices, friendships, "
            "requests and blocks go, the viewer leaves every group, the text of their "
            "messages is erased (seqs stay), and the username is never given to anyone "
            "again. A wrong password is FORBIDDEN and counts as a failed logIn."
        ),
    )


@strawberry.type
class Subscription:
    message_added = strawberry.subscription(
        resolver=subscription_resolvers.message_added,
        description=(
            "New messages of one room (the viewer must be a member). With afterSeq, first "
            "replays every stored message with seq > afterSeq, then goes live: each message "
            "exactly once, in seq order, no gaps."
        ),
    )
    room_added = strawberry.subscription(
        resolver=subscription_resolvers.room_added,
        description="Rooms the viewer was just added to (created with them, or invited).",
    )
    presence_changed = strawberry.subscription(
        resolver=friend_resolvers.presence_changed,
        description="ONLINE/OFFLINE changes of the viewer's friends.",
    )
    room_updated = strawberry.subscription(
        resolver=subscription_resolvers.room_updated,
        description="The live feed of the viewer's room list.",
    )
    room_activity = strawberry.subscription(
        resolver=subscription_resolvers.room_activity,
        description="Typing, read receipts, edits/deletes and membership changes in one room.",
    )
    events = strawberry.subscription(
        resolver=account_event_resolvers.events,
        description=(
            "v1.2. The viewer's whole account on one subscription: messages, edits, deletes, "
            "reactions, typing, receipts and membership changes of every room the viewer is "
            "in, rooms joined and left, invitations. Given `since` (a sync's nextToken or an "
            "event's token), it first sends what happened after it, then goes live: each "
            "message exactly once, in seq order per room. Typing is live only."
        ),
    )


class PlopSchema(strawberry.Schema):
    """Gives every error its code where strawberry hands errors over.

    Strawberry passes each result's error list here before the result is sent,
    including errors raised outside the extensions' operation hook (a document that
    does not parse, say). The list is rewritten in place, so the result sends the
    coded errors; ``schema.errors`` logs what is unexpected, so nothing else is logged.
    """

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Strawberry's execute, with a lone surrogate in the operation name escaped.

        An unknown name is answered in an HTTP 400 body that quotes it, and a lone
        surrogate cannot be encoded there. No document's name can hold one (the
        lexer refuses it), so the escaped name is refused as unknown just the same.
        """
        if operation_name is not None and has_lone_surrogate(operation_name):
            operation_name = operation_name.encode("utf-8", "backslashreplace").decode()
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        errors[:] = [with_code(error) for error in errors]


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The served schema, with the limits the settings give."""
    limits = settings or Settings()
    # The limiters' validation rules are made once: each limiter makes a new rule class
    # when it is built, and the validation cache is keyed by the rules as well as the
    # document, so a limiter built per operation would make every lookup miss.
    limit_rules = [
        *QueryDepthLimiter(max_depth=limits.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    if not limits.introspection:
        # The rule of strawberry's DisableIntrospection, kept with the other rules so
        # that they are cached with them: `__schema`, `__type` and the fields
        # below them are refused (BAD_USER_INPUT, as every validation error);
        # `__typename` stays.
        limit_rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Any] = [
        OperationMetrics,
        LogFields,
        RoundTripScope,
        ErrorCodes,
        # Parsing and validation, cached, with the limits and the cost (one extension:
        # see schema.documents for why).
        DocumentRules(
            DOCUMENT_CACHE_SIZE, limits.max_query_tokens, limits.max_query_cost, limit_rules
        ).extension(),
    ]
    if limits.otlp_endpoint is not None:
        # First, so that every other extension's work is inside the operation's span;
        # left out when tracing is off, so that an operation pays nothing for it.
        extensions.insert(0, OperationSpans)
    return PlopSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=PlopExecutionContext,
    )
