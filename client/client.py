"""``PlopClient``: Plop's GraphQL API as typed Python calls, over one HTTP session.

Calls go over HTTP; ``messages()`` opens a WebSocket of its own (either subprotocol)
and keeps it going across dropped sockets and server restarts, resuming with
``afterSeq`` so that each message is yielded once, in seq order, none skipped.
``activity()`` follows a room's edits, deletes, typing, receipts and membership the
same way, live only: what happens while it reconnects is not replayed. ``events()``
follows the whole account on one socket and resumes from the token of the last event
it yielded, so nothing is missed across reconnects either.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from client import operations
from client._parsing import (
    parse_account_event,
    parse_activity,
    parse_auth,
    parse_invitation,
    parse_membership,
    parse_message,
    parse_room,
    parse_session,
    parse_user,
)
from client.exceptions import (
    REFUSED_AT_INIT_CLOSE_CODE,
    TRANSPORT_FAILURES,
    PlopClientError,
    PlopTransportError,
    translate,
)
from client.file_uploads import guessed_type, send_to_storage
from client.results import (
    AccountEvent,
    AuthPayload,
    Message,
    MessageAdded,
    Room,
    RoomActivity,
    RoomInvitation,
    RoomMembership,
    RoomRole,
    Session,
    User,
)
from client.retry import Backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

Subprotocol = Literal["graphql-transport-ws", "graphql-ws"]
TRANSPORT_WS: Final = "graphql-transport-ws"
LEGACY_WS: Final = "graphql-ws"
SUBPROTOCOLS: Final[tuple[Subprotocol, ...]] = (TRANSPORT_WS, LEGACY_WS)

DEFAULT_URL = "http://127.0.0.1:8000/graphql"
# Every network wait is bounded: an HTTP call, a WebSocket connect, its connection_ack.
REQUEST_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
# A send is retried with its clientId this many times in all: a retry cannot duplicate.
SEND_ATTEMPTS = 5
# Reads are idempotent too, and are retried as often.
READ_ATTEMPTS = 5
MAX_PAGE_SIZE = 100
# Long enough that no two sends of one client ever collide, well under the 64-char cap.
_CLIENT_ID_BYTES = 16


def subprotocol_named(name: str) -> Subprotocol:
    """The subprotocol called ``name``; ValueError if Plop does not speak it."""
    for subprotocol in SUBPROTOCOLS:
        if subprotocol == name:
            return subprotocol
    raise ValueError(f"unknown WebSocket subprotocol {name!r}; use one of {SUBPROTOCOLS}")


def websocket_url(url: str) -> str:
    """The ws:// (or wss://) URL of the endpoint served at an http:// (https://) URL."""
    parts = urlsplit(url)
    schemes = {"http": "ws", "https": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"the Plop URL must be http:// or https://, not {url!r}")
    return urlunsplit(parts._replace(scheme=schemes[parts.scheme]))


def new_client_id() -> str:
    """A fresh idempotency key for one message."""
    return secrets.token_hex(_CLIENT_ID_BYTES)


class PlopClient:
    """A Plop user's connection to one server; use it as an async context manager.

    ``token`` authenticates every call; ``sign_up`` and ``log_in`` set it. Failures
    raise ``PlopClientError`` (see ``client.exceptions``).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        subprotocol: Subprotocol = TRANSPORT_WS,
        *,
        backoff: Backoff | None = None,
        send_attempts: int = SEND_ATTEMPTS,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.ws_url = websocket_url(url)
        self.subprotocol = subprotocol_named(subprotocol)
        self.token = token
        self.backoff = backoff or Backoff()
        self.send_attempts = max(1, send_attempts)
        self._timeout = timeout_seconds
        self._stack: AsyncExitStack | None = None
        self._session: Any = None

    async def __aenter__(self) -> PlopClient:
        async with AsyncExitStack() as stack:
            transport = HTTPXAsyncTransport(url=self.url, timeout=self._timeout)
            client = Client(transport=transport, execute_timeout=self._timeout)
            try:
                self._session = await stack.enter_async_context(client)
            except TRANSPORT_FAILURES as exc:
                raise translate(exc, self.url) from exc
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # --- accounts -------------------------------------------------------------------

    async def sign_up(
        self, username: str, password: str, display_name: str | None = None
    ) -> AuthPayload:
        """Creates an account; the client is then logged in as it."""
        data = await self._execute(
            operations.SIGN_UP,
            {"username": username, "password": password, "displayName": display_name},
        )
        auth = parse_auth(data["signUp"])
        self.token = auth.token
        return auth

    async def log_in(self, username: str, password: str) -> AuthPayload:
        """Opens a session; the client then uses its token."""
        data = await self._execute(operations.LOG_IN, {"username": username, "password": password})
        auth = parse_auth(data["logIn"])
        self.token = auth.token
        return auth

    async def log_out(self) -> None:
        """Revokes the session's token on the server and forgets it."""
        await self._execute(operations.LOG_OUT, {})
        self.token = None

    async def sessions(self) -> list[Session]:
        """The viewer's sessions, newest first."""
        data = await self._read(operations.SESSIONS, {})
        return [parse_session(session) for session in data["sessions"]]

    async def end_session(self, session_id: str) -> None:
        """Ends one of the viewer's sessions (its sockets close)."""
        await self._execute(operations.END_SESSION, {"sessionId": session_id})

    async def change_password(self, current_password: str, new_password: str) -> None:
        """Changes the password; every other session of the viewer ends."""
        await self._execute(
            operations.CHANGE_PASSWORD,
            {"currentPassword": current_password, "newPassword": new_password},
        )

    async def delete_account(self, password: str) -> None:
        """Deletes the viewer's account for good; the client forgets its token."""
        await self._execute(operations.DELETE_ACCOUNT, {"password": password})
        self.token = None

    async def me(self) -> User:
        """The user the token belongs to."""
        data = await self._read(operations.ME, {})
        return parse_user(data["me"])

    async def search_users(self, query: str, first: int = 20) -> list[User]:
        """Users whose username or display name starts with ``query`` (any case)."""
        data = await self._read(operations.SEARCH_USERS, {"query": query, "first": first})
        return [parse_user(user) for user in data["searchUsers"]]

    # --- rooms ----------------------------------------------------------------------

    async def create_direct_room(self, user_id: str) -> Room:
        """The 1:1 room with that user (the existing one if there is one)."""
        data = await self._execute(operations.CREATE_DIRECT_ROOM, {"userId": user_id})
        return parse_room(data["createDirectRoom"])

    async def create_group_room(self, title: str, member_ids: Sequence[str]) -> Room:
        """A new group room of the viewer and these users."""
        data = await self._execute(
            operations.CREATE_GROUP_ROOM, {"title": title, "memberIds": list(member_ids)}
        )
        return parse_room(data["createGroupRoom"])

    async def room_invitations(self) -> list[RoomInvitation]:
        """Group invitations waiting for the viewer's answer, newest first."""
        data = await self._read(operations.ROOM_INVITATIONS, {})
        return [parse_invitation(invitation) for invitation in data["roomInvitations"]]

    async def respond_to_room_invitation(self, invitation_id: str, accept: bool) -> Room | None:
        """Accepting joins the room (returned); declining returns None."""
        data = await self._execute(
            operations.RESPOND_TO_ROOM_INVITATION,
            {"invitationId": invitation_id, "accept": accept},
        )
        joined = data["respondToRoomInvitation"]
        return parse_room(joined) if joined is not None else None

    async def mute_room(self, room_id: str, until: datetime | None = None) -> Room:
        """No push of the room until ``until`` (None: until unmuted)."""
        variables = {"roomId": room_id, "until": until.isoformat() if until else None}
        data = await self._execute(operations.MUTE_ROOM, variables)
        return parse_room(data["muteRoom"])

    async def unmute_room(self, room_id: str) -> Room:
        """Pushes of the room again."""
        data = await self._execute(operations.UNMUTE_ROOM, {"roomId": room_id})
        return parse_room(data["unmuteRoom"])

    async def room(self, room_id: str) -> Room:
        """One room the viewer is in (FORBIDDEN otherwise, NOT_FOUND if there is none)."""
        data = await self._read(operations.ROOM, {"id": room_id})
        if data["room"] is None:
            raise PlopClientError("NOT_FOUND", "no such room")
        return parse_room(data["room"])

    async def rooms(self, page_size: int = 20) -> AsyncGenerator[Room, None]:
        """Every room the viewer is in, most recent activity first, a page at a time."""
        pages = self._nodes(operations.ROOMS_PAGE, {"first": page_size}, lambda data: data["rooms"])
        async for node in pages:
            yield parse_room(node)

    async def memberships(
        self, room_id: str, page_size: int = 100
    ) -> AsyncGenerator[RoomMembership, None]:
        """Every member of the room with their role, oldest member first."""
        variables = {"id": room_id, "first": page_size}
        pages = self._nodes(
            operations.MEMBERSHIPS_PAGE, variables, lambda data: data["room"]["memberships"]
        )
        async for node in pages:
            yield parse_membership(node)

    async def _nodes(
        self,
        request: GraphQLRequest,
        variables: Mapping[str, object],
        connection: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every node of a Relay connection, read forward a page at a time."""
        after: str | None = None
        while True:
            page = connection(await self._read(request, {**variables, "after": after}))
            for edge in page["edges"]:
                yield edge["node"]
            if not page["pageInfo"]["hasNextPage"] or not page["edges"]:
                return
            after = page["pageInfo"]["endCursor"]

    async def update_room(self, room_id: str, title: str) -> Room:
        """Renames a group room (its owner and admins may)."""
        data = await self._execute(operations.UPDATE_ROOM, {"roomId": room_id, "title": title})
        return parse_room(data["updateRoom"])

    async def remove_member(self, room_id: str, user_id: str) -> Room:
        """Takes a member out of a group room (its owner, or an admin for a member)."""
        variables = {"roomId": room_id, "userId": user_id}
        data = await self._execute(operations.REMOVE_MEMBER, variables)
        return parse_room(data["removeMember"])

    async def set_member_role(self, room_id: str, user_id: str, role: RoomRole) -> Room:
        """Gives a member a role (the owner alone may; OWNER hands the group over)."""
        variables = {"roomId": room_id, "userId": user_id, "role": role.value}
        data = await self._execute(operations.SET_MEMBER_ROLE, variables)
        return parse_room(data["setMemberRole"])

    # --- messages -------------------------------------------------------------------

    async def send_message(
        self,
        room_id: str,
        text: str,
        client_id: str | None = None,
        reply_to_id: str | None = None,
        attachment_ids: Sequence[str] = (),
    ) -> Message:
        """Sends text to a room, as a reply to ``reply_to_id`` (a message of the same
        room) if given, with uploads (see ``upload``) if given; returns the stored
        message.

        Without a ``client_id`` one is made up, so that every send is idempotent: a
        network error leaves it unknown whether the message was stored, and the retry
        with the same clientId returns the stored one instead of storing a second.
        """
        variables: dict[str, object] = {
            "roomId": room_id,
            "text": text,
            "clientId": client_id or new_client_id(),
            "replyToId": reply_to_id,
        }
        document = operations.SEND_MESSAGE
        if attachment_ids:
            variables["attachmentIds"] = list(attachment_ids)
            document = operations.SEND_FILES
        data = await self._retrying(lambda: self._execute(document, variables), self.send_attempts)
        return parse_message(data["sendMessage"])

    async def upload(self, room_id: str, body: bytes, filename: str, content_type: str) -> str:
        """Reserves an upload into the room and sends the bytes straight to storage;
        returns the id to name in ``send_message(attachment_ids=...)``."""
        variables = {
            "roomId": room_id,
            "filename": filename,
            "contentType": content_type,
            "size": len(body),
        }
        ticket = (await self._execute(operations.CREATE_UPLOAD, variables))["createUpload"]
        await send_to_storage(ticket, body, self._timeout)
        attachment_id: str = ticket["attachmentId"]
        return attachment_id

    async def send_file(
        self, room_id: str, path: Path, text: str = "", content_type: str | None = None
    ) -> Message:
        """Uploads the file and sends it to the room (with ``text``, which may be "")."""
        body = await asyncio.to_thread(path.read_bytes)
        attachment_id = await self.upload(
            room_id, body, path.name, content_type or guessed_type(path)
        )
        return await self.send_message(room_id, text, attachment_ids=[attachment_id])

    async def edit_message(self, message_id: str, text: str) -> Message:
        """Replaces the text of one of the viewer's messages; returns it as edited."""
        variables = {"messageId": message_id, "text": text}
        data = await self._retrying(
            lambda: self._execute(operations.EDIT_MESSAGE, variables), self.send_attempts
        )
        return parse_message(data["editMessage"])

    async def delete_message(self, message_id: str) -> Message:
        """Deletes one of the viewer's messages (its seq stays, its text is cleared)."""
        variables = {"messageId": message_id}
        data = await self._retrying(
            lambda: self._execute(operations.DELETE_MESSAGE, variables), self.send_attempts
        )
        return parse_message(data["deleteMessage"])

    async def add_reaction(self, message_id: str, emoji: str) -> Message:
        """Puts one emoji on a message (again: no change); returns the message as it
        stands, its reactions included."""
        variables = {"messageId": message_id, "emoji": emoji}
        data = await self._retrying(
            lambda: self._execute(operations.ADD_REACTION, variables), self.send_attempts
        )
        return parse_message(data["addReaction"])

    async def remove_reaction(self, message_id: str, emoji: str) -> Message:
        """Takes the viewer's emoji off a message (if there); returns the message."""
        variables = {"messageId": message_id, "emoji": emoji}
        data = await self._retrying(
            lambda: self._execute(operations.REMOVE_REACTION, variables), self.send_attempts
        )
        return parse_message(data["removeReaction"])

    async def set_typing(self, room_id: str, typing: bool = True) -> None:
        """Says the viewer is typing in the room (or stopped); a start expires unless
        repeated, so a client repeats it every few seconds while the user types."""
        await self._execute(operations.SET_TYPING, {"roomId": room_id, "typing": typing})

    async def history(
        self, room_id: str, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncGenerator[Message, None]:
        """The room's whole history, oldest first, fetched forward a page at a time."""
        after: str | None = None
        while True:
            data = await self._read(
                operations.HISTORY_PAGE, {"roomId": room_id, "first": page_size, "after": after}
            )
            page = data["messages"]
            for edge in page["edges"]:
                yield parse_message(edge["node"])
            if not page["pageInfo"]["hasNextPage"] or not page["edges"]:
                return
            after = page["pageInfo"]["endCursor"]

    async def search_messages(
        self, query: str, room_id: str | None = None, page_size: int = 20
    ) -> AsyncGenerator[Message, None]:
        """Messages holding every word of ``query`` (any case, any accents), newest
        first, in one room or (None) in every room the viewer is in, a page at a time."""
        variables = {"query": query, "roomId": room_id, "first": page_size}
        pages = self._nodes(
            operations.SEARCH_MESSAGES, variables, lambda data: data["searchMessages"]
        )
        async for node in pages:
            yield parse_message(node)

    async def last_seq(self, room_id: str) -> int:
        """The seq of the room's newest message; 0 for an empty room."""
        data = await self._read(operations.ROOM_LAST_SEQ, {"id": room_id})
        if data["room"] is None:
            raise PlopClientError("NOT_FOUND", "no such room")
        seq: int = data["room"]["lastSeq"]
        return seq

    async def messages(
        self, room_id: str, after_seq: int | None = None, *, max_attempts: int | None = None
    ) -> AsyncGenerator[Message, None]:
        """The room's messages with seq > after_seq (from now if None), then live, forever.

        Each message is yielded once, in seq order, with no gaps. When the socket drops
        or the server restarts, it reconnects after an exponential, jittered, capped
        backoff and resubscribes with afterSeq = the last seq it yielded; anything the
        server sends again is dropped. Errors that a retry cannot fix (UNAUTHENTICATED,
        FORBIDDEN, NOT_FOUND, BAD_USER_INPUT, ...) end it; transport errors,
        UNAVAILABLE and RATE_LIMITED do not, unless ``max_attempts`` consecutive
        attempts failed. Close it (``contextlib.aclosing``) to close its socket promptly.
        """
        last = after_seq

        async def attempt() -> AsyncGenerator[Message, None]:
            nonlocal last
            if last is None:
                last = await self.last_seq(room_id)
            async with aclosing(self._message_added(room_id, last)) as stream:
                async for message in stream:
                    if message.seq <= last:
                        continue  # already yielded: the resumed replay overlaps
                    if message.seq != last + 1:
                        # The server promises no gaps; resubscribing refills one.
                        raise PlopTransportError(f"expected seq {last + 1}, received {message.seq}")
                    last = message.seq
                    yield message

        resumed = self._resuming(
            attempt,
            max_attempts,
            "live messages interrupted; resuming",
            lambda: {"room_id": room_id, "after_seq": last},
        )
        async with aclosing(resumed) as messages:
            async for message in messages:
                yield message

    async def activity(
        self, room_id: str, *, max_attempts: int | None = None
    ) -> AsyncGenerator[RoomActivity, None]:
        """The room's activity from now on, forever: edits and deletes
        (``MessageUpdated``), reactions, typing, read receipts and membership changes.

        Reconnects like ``messages()`` (same errors end it), but live only: what
        happened while the socket was down is not replayed; ``history`` shows edits.
        """

        async def attempt() -> AsyncGenerator[RoomActivity, None]:
            variables = {"roomId": room_id}
            stream = self._subscription(operations.ROOM_ACTIVITY, variables)
            async with aclosing(stream) as activity:
                async for data in activity:
                    yield parse_activity(data["roomActivity"])

        resumed = self._resuming(
            attempt,
            max_attempts,
            "room activity interrupted; resuming",
            lambda: {"room_id": room_id},
        )
        async with aclosing(resumed) as activity:
            async for event in activity:
                yield event

    async def sync_token(self) -> str:
        """A token of the account as it stands now (``sync``'s ``nextToken``): the
        events after it are what ``events(since=token)`` gives."""
        data = await self._read(operations.SYNC_TOKEN, {})
        token: str = data["sync"]["nextToken"]
        return token

    async def events(
        self, since: str | None = None, *, max_attempts: int | None = None
    ) -> AsyncGenerator[AccountEvent, None]:
        """The viewer's whole account, forever: every room's messages, edits, deletes,
        reactions, typing, receipts and membership, rooms joined and left, invitations.

        With ``since`` (an event's ``token``, kept by the app), what followed that event
        comes first, then live events; without it, from now. Each event carries its
        token: keep the last one to carry on later where the app stopped. When the
        socket drops or the server restarts, it reconnects as ``messages()`` does (the
        same backoff, the same errors end it) and resumes from the token of the last
        event it yielded, so nothing is missed and nothing comes twice (a message at or
        below a seq already yielded for its room is dropped, should the server send it
        again). Without ``since`` it starts from a ``sync`` token read first, so that a
        reconnect before the first event misses nothing either. A token the server no
        longer holds raises ``PlopSyncTokenExpired``: start over without one.
        """
        token = since if since is not None else await self.sync_token()
        # The last seq yielded per room (seqs only grow, through leaving and rejoining).
        last_seqs: dict[str, int] = {}

        async def attempt() -> AsyncGenerator[AccountEvent, None]:
            nonlocal token
            stream = self._subscription(operations.EVENTS, {"since": token})
            async with aclosing(stream) as events:
                async for data in events:
                    event = parse_account_event(data["events"])
                    payload = event.payload
                    if isinstance(payload, MessageAdded):
                        message = payload.message
                        if message.seq <= last_seqs.get(message.room_id, 0):
                            continue  # yielded already
                        last_seqs[message.room_id] = message.seq
                    token = event.token
                    yield event

        resumed = self._resuming(
            attempt,
            max_attempts,
            "account events interrupted; resuming",
            lambda: {"resumable": token is not None},
        )
        async with aclosing(resumed) as events:
            async for event in events:
                yield event

    async def _resuming(
        self,
        attempt: Callable[[], AsyncGenerator[T, None]],
        max_attempts: int | None,
        what: str,
        where: Callable[[], dict[str, object]],
    ) -> AsyncGenerator[T, None]:
        """What ``attempt`` yields, forever: each time it ends or fails with an error a
        retry can fix, it runs again after the backoff's delay (the attempt resumes from
        where its caller's state says). ``max_attempts`` consecutive failures, or an
        error a retry cannot fix, end it with that error."""
        failures = 0
        while True:
            error: PlopClientError
            try:
                async with aclosing(attempt()) as stream:
                    async for item in stream:
                        failures = 0
                        yield item
                error = PlopTransportError("the server ended the subscription")
            except PlopClientError as exc:
                if not exc.retryable:
                    raise
                error = exc
            failures += 1
            await self._pause_to_resume(error, failures, max_attempts, what, where())

    async def _pause_to_resume(
        self,
        error: PlopClientError,
        failures: int,
        max_attempts: int | None,
        what: str,
        extra: dict[str, object],
    ) -> None:
        """Raises ``error`` once ``max_attempts`` consecutive attempts failed; else logs
        the interruption and waits the backoff's delay before the next attempt."""
        if max_attempts is not None and failures >= max_attempts:
            raise error
        delay = self.backoff.delay(failures - 1)
        logger.warning(what, extra={**extra, "code": error.code, "delay": delay})
        await asyncio.sleep(delay)

    async def _message_added(self, room_id: str, after_seq: int) -> AsyncGenerator[Message, None]:
        """One messageAdded subscription on a socket of its own, until it ends or fails."""
        variables = {"roomId": room_id, "afterSeq": after_seq}
        async with aclosing(self._subscription(operations.MESSAGE_ADDED, variables)) as stream:
            async for data in stream:
                yield parse_message(data["messageAdded"])

    async def _subscription(
        self, document: GraphQLRequest, variables: Mapping[str, object]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One subscription on a socket of its own, until it ends or fails."""
        transport = WebsocketsTransport(
            url=self.ws_url,
            init_payload={"authToken": self.token} if self.token else {},
            subprotocols=[self.subprotocol],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            ack_timeout=CONNECT_TIMEOUT_SECONDS,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
        )
        request = GraphQLRequest(document, variable_values=dict(variables))
        try:
            async with Client(transport=transport) as session:
                async for data in session.subscribe(request):
                    yield data
        except TRANSPORT_FAILURES as exc:
            raise await self._socket_error(exc) from exc

    async def _socket_error(self, exc: BaseException) -> PlopClientError:
        """What a failed socket means; asks over HTTP when the close code cannot say."""
        error = translate(exc, self.ws_url)
        if isinstance(error, PlopTransportError) and error.close_code == REFUSED_AT_INIT_CLOSE_CODE:
            # graphql-transport-ws refuses connection_init with 4403 both for a bad
            # token and for a backend that is down; only the first one is final.
            try:
                await self.me()
            except PlopClientError as refusal:
                if not refusal.retryable:
                    return refusal
        return error

    # --- one request ----------------------------------------------------------------

    async def _read(
        self, request: GraphQLRequest, variables: Mapping[str, object]
    ) -> dict[str, Any]:
        """A query: idempotent, so retried like a send."""
        return await self._retrying(lambda: self._execute(request, variables), READ_ATTEMPTS)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], attempts: int) -> T:
        """Runs ``attempt`` until it succeeds, fails for good, or ``attempts`` ran out."""
        for number in range(attempts):
            try:
                return await attempt()
            except PlopClientError as error:
                if not error.retryable or number + 1 >= attempts:
                    raise
                delay = self.backoff.delay(number)
                logger.info("retrying a request", extra={"code": error.code, "delay": delay})
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _execute(
        self, request: GraphQLRequest, variables: Mapping[str, object]
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("open the client first: `async with PlopClient(...) as client`")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            data: dict[str, Any] = await self._session.execute(
                GraphQLRequest(request, variable_values=dict(variables)),
                extra_args={"headers": headers},
            )
        except TRANSPORT_FAILURES as exc:
            raise translate(exc, self.url) from exc
        return data
