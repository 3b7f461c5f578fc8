"""Accounts and sessions: sign-up, log-in, log-out, who a token belongs to, the
viewer's sessions (listed and ended one by one), and password changes.

A session that ends, however (logOut, endSession, a password change, the per-user
cap, the account's deletion), ends the same way (``_ended``): its sockets close on
every instance and the push devices it registered go."""

from __future__ import annotations

import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from auth.passwords import PasswordHashing
from auth.sessions import (
    SESSION_ID_PATTERN,
    SessionInfo,
    SessionRecord,
    SessionStore,
    session_id,
    session_key,
)
from errors import BadUserInput, Conflict, Forbidden, NotFound, Unauthenticated
from live.hub import FanoutHub
from models import UserDoc
from pubsub import SessionEnded
from services.devices import DeviceService
from services.fresh_reads import FreshReads
from services.publisher import EventPublisher
from services.rate_limits import LimitName, RateLimiter
from services.shown_text import refuse_hidden_characters

USERNAME_PATTERN = re.compile(r"[a-z0-9_.]{3,32}")
MIN_PASSWORD_CHARS = 8
# argon2 hashes any length, but an unbounded password is a cheap way to burn CPU.
MAX_PASSWORD_CHARS = 1_024
MAX_DISPLAY_NAME_CHARS = 64
# Every request and socket resolves its viewer; the session is checked in Redis each
# time (logOut must bite at once), the user document is kept a little while (what
# may change in it later, the password hash and deletion, is always read afresh).
RECENT_USERS = 10_000
RECENT_USER_SECONDS = 30.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: UserDoc


def normalize_username(username: str) -> str:
    """Lowercased username, or BAD_USER_INPUT if it is not 3-32 of ``[a-z0-9_.]``."""
    normalized = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(normalized):
        raise BadUserInput(
            "username must be 3-32 characters of lowercase letters, digits, '_' and '.'"
        )
    return normalized


def _checked_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise BadUserInput(
            f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long"
        )
    return password


def checked_display_name(display_name: str) -> str:
    """The name as shown: NFKC-normalised, runs of spaces made one, 1-64 characters.

    NFKC folds look-alike forms (fullwidth letters, ligatures, odd spaces) into one
    spelling. Control and format characters are refused rather than dropped: they
    can hide text or reorder it on screen (a bidi override), so that one name looks
    like another.
    """
    normalized = unicodedata.normalize("NFKC", display_name)
    refuse_hidden_characters(normalized, "displayName")
    cleaned = " ".join(normalized.split())
    if not 1 <= len(cleaned) <= MAX_DISPLAY_NAME_CHARS:
        raise BadUserInput(f"displayName must be 1 to {MAX_DISPLAY_NAME_CHARS} characters long")
    return cleaned


class Recent(Generic[T]):
    """Values by key, each kept for a short while, the oldest dropped past capacity.

    Holds user documents for who is asking: what changes in one after sign-up (its
    password, its deletion, which first ends all its sessions) is read afresh where
    it matters; the expiry only bounds how long a removed user lingers.
    """

    def __init__(self, capacity: int, seconds: float) -> None:
        self._capacity = capacity
        self._seconds = seconds
        self._values: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> T | None:
        kept = self._values.get(key)
        if kept is None or kept[0] < time.monotonic():
            return None
        return kept[1]

    def keep(self, key: str, value: T) -> None:
        self._values.pop(key, None)
        self._values[key] = (time.monotonic() + self._seconds, value)
        while len(self._values) > self._capacity:
            self._values.popitem(last=False)


class AccountService:
    """The rules of accounts; sessions live in the ``SessionStore``."""

    def __init__(
        self,
        sessions: SessionStore,
        publisher: EventPublisher,
        hub: FanoutHub,
        passwords: PasswordHashing,
        limits: RateLimiter,
        devices: DeviceService,
    ) -> None:
        self.sessions = sessions
        self._devices = devices
        self._passwords = passwords
        self._limits = limits
        self._publisher = publisher
        self._hub = hub
        self._recent_users: Recent[UserDoc] = Recent(RECENT_USERS, RECENT_USER_SECONDS)
        # The sockets of a user reconnecting at once miss the cache together: one read.
        self._users: FreshReads[PydanticObjectId, UserDoc] = FreshReads(self.get_many)
        # A connection storm's sockets each present a token: one round trip for all
        # the tokens asked while one is in flight, each read begun after its ask.
        self._socket_sessions: FreshReads[str, SessionInfo] = FreshReads(sessions.lookup_many)

    async def sign_up(
        self,
        username: str,
        password: str,
        display_name: str | None,
        client_address: str,
        user_agent: str | None = None,
    ) -> Session:
        """A new account and its first session; CONFLICT if the username is taken."""
        await self._limits.hit(LimitName.SIGN_UP_PER_ADDRESS, client_address)
        name = normalize_username(username)
        shown = checked_display_name(display_name if display_name is not None else name)
        user = UserDoc(
            username=name,
            display_name=shown,
            display_name_key=shown.lower(),
            password_hash=await self._passwords.hash(_checked_password(password)),
        )
        try:
            await user.insert()
        except DuplicateKeyError as exc:
            holder = await UserDoc.find_one(UserDoc.username == name)
            if holder is not None and holder.deletion_started_at is not None:
                raise Conflict(
                    f"username {name!r} belonged to a deleted account: it is never given "
                    "to anyone again, pick another"
                ) from exc
            raise Conflict(f"username {name!r} is taken") from exc
        return await self._new_session(user, user_agent)

    async def log_in(
        self, username: str, password: str, client_address: str, user_agent: str | None = None
    ) -> Session:
        """A new session; UNAUTHENTICATED, saying nothing more, if the pair is wrong.

        Failures are counted per username and per client address; past either budget
        every logIn is RATE_LIMITED, the right password too, until it refills.
        Successes have budgets of their own (each costs a hash and a stored session).
        An account being deleted, or deleted, never logs in.
        """
        name = username.strip().lower()
        failures = (
            (LimitName.FAILED_LOG_IN_PER_USERNAME, name),
            (LimitName.FAILED_LOG_IN_PER_ADDRESS, client_address),
        )
        successes = (
            (LimitName.LOG_IN_PER_USERNAME, name),
            (LimitName.LOG_IN_PER_ADDRESS, client_address),
        )
        await self._limits.check(*failures, *successes)
        # A name no account can have is not looked up (a NUL byte, say, is refused by
        # some stores), but it costs the same hash, so it reveals nothing either.
        valid = USERNAME_PATTERN.fullmatch(name) is not None
        user = await UserDoc.find_one(UserDoc.username == name) if valid else None
        password_hash = user.password_hash if user else self._passwords.unknown_user_hash
        matches = await self._passwords.verify(password_hash, password[:MAX_PASSWORD_CHARS])
        if not matches or user is None or user.deletion_started_at is not None:
            await self._limits.spend(*failures)
            raise Unauthenticated("wrong username or password")
        await self._limits.spend(*successes)
        return await self._new_session(user, user_agent)

    async def _new_session(self, user: UserDoc, user_agent: str | None) -> Session:
        """A new session of the user; those it ends past the cap close as at logOut."""
        created = await self.sessions.create(str(user.id), user_agent)
        await self._ended(str(user.id), created.ended)
        return Session(token=created.token, user=user)

    async def log_out(self, token: str, user: UserDoc) -> None:
        """Revokes the token at once and closes the session's sockets everywhere."""
        await self.sessions.revoke(token)
        await self._ended(str(user.id), [session_id(token)])

    async def _ended(self, user_id: str, ended_ids: Iterable[str]) -> None:
        """Closes the ended sessions' sockets: this instance's before this returns,
        other instances' from the event (or, if the broker is down, from their next
        session check); the push devices the sessions registered go."""
        for ended_id in ended_ids:
            ended = SessionEnded(user_id=user_id, session_id=ended_id)
            self._hub.dispatch(ended)
            await self._publisher.publish(ended)
            await self._devices.forget_session(ended_id)

    async def sessions_of(self, viewer: UserDoc) -> list[SessionRecord]:
        """The viewer's live sessions, newest first."""
        return await self.sessions.listed(str(viewer.id))

    async def end_session(self, viewer: UserDoc, ended_id: str) -> None:
        """Ends one of the viewer's sessions; NOT_FOUND for any other id, another
        user's live session too (an id says nothing of whose it is)."""
        await self._limits.hit(LimitName.END_SESSION, str(viewer.id))
        if not SESSION_ID_PATTERN.fullmatch(ended_id):
            raise BadUserInput("sessionId is not a session id")
        if await self.sessions.owner_of(ended_id) != str(viewer.id):
            raise NotFound("no such session")
        await self._ended(str(viewer.id), await self.sessions.end(str(viewer.id), [ended_id]))

    async def end_all_sessions(self, user_id: str, keep: str | None = None) -> None:
        """Ends every session of the user but ``keep``, as logOut ends one."""
        await self._ended(user_id, await self.sessions.end_all(user_id, keep))

    async def check_password(self, viewer: UserDoc, password: str, client_address: str) -> UserDoc:
        """The viewer's account as stored, once ``password`` is found to be its password;
        FORBIDDEN otherwise. Checked at the hashing cost; a wrong password spends the
        failed-logIn budgets, and past either every check is RATE_LIMITED."""
        failures = (
            (LimitName.FAILED_LOG_IN_PER_USERNAME, viewer.username),
            (LimitName.FAILED_LOG_IN_PER_ADDRESS, client_address),
        )
        await self._limits.check(*failures)
        stored = await UserDoc.get(viewer.id)  # never the kept copy: the hash may have changed
        if stored is None:
            raise Unauthenticated("the session token is invalid, expired or revoked")
        if not await self._passwords.verify(stored.password_hash, password[:MAX_PASSWORD_CHARS]):
            await self._limits.spend(*failures)
            raise Forbidden("the password is wrong")
        return stored

    async def change_password(
        self,
        viewer: UserDoc,
        current_session: str,
        current_password: str,
        new_password: str,
        client_address: str,
    ) -> None:
        """Replaces the viewer's password; every other session of theirs ends."""
        await self._limits.hit(LimitName.CHANGE_PASSWORD, str(viewer.id))
        _checked_password(new_password)
        stored = await self.check_password(viewer, current_password, client_address)
        new_hash = await self._passwords.hash(new_password)
        await UserDoc.find_one({"_id": stored.id, "deletion_started_at": None}).update(
            {"$set": {"password_hash": new_hash}}
        )
        await self.end_all_sessions(str(viewer.id), keep=current_session)

    async def user_for_token(self, token: str | None, spending: LimitName | None = None) -> UserDoc:
        """The user whose valid session the token is; UNAUTHENTICATED otherwise. With
        ``spending``, one call of that budget of the user is spent too (RATE_LIMITED
        when it is empty), in the same round trip as the session's check once this
        instance has seen the token."""
        if not token:
            raise Unauthenticated("sign in: this operation needs a session token")
        user_id = self.sessions.known_owner(token) if spending is not None else None
        if spending is not None and user_id is not None:
            if not await self._limits.hit_in_session(
                spending, user_id, session_key(token), user_id
            ):
                self.sessions.forget_owner(token)
                raise Unauthenticated("the session token is invalid, expired or revoked")
        else:
            user_id = await self.sessions.user_id_for(token)
            if not user_id:
                raise Unauthenticated("the session token is invalid, expired or revoked")
            if spending is not None:
                await self._limits.hit(spending, user_id)
        await self.sessions.seen([session_id(token)])
        return await self._user(user_id)

    async def spend(self, spending: LimitName, user: UserDoc) -> None:
        """One call of the user's budget (a viewer whose session this request checked)."""
        await self._limits.hit(spending, str(user.id))

    async def open_session(self, token: str | None) -> tuple[UserDoc, SessionInfo]:
        """The user and the live session of a socket's token (read fresh, in a batch
        with the other sockets' tokens); UNAUTHENTICATED otherwise."""
        if not token:
            raise Unauthenticated("sign in: this operation needs a session token")
        session = await self._socket_sessions.get(token)
        if session is None:
            raise Unauthenticated("the session token is invalid, expired or revoked")
        await self.sessions.seen([session.session_id])
        return await self._user(session.user_id), session

    async def _user(self, user_id: str) -> UserDoc:
        user = self._recent_users.get(user_id)
        if user is None:
            user = await self._users.get(PydanticObjectId(user_id))
            if user is None:
                raise Unauthenticated("the session token is invalid, expired or revoked")
            self._recent_users.keep(user_id, user)
        return user

    def remember(self, user: UserDoc) -> None:
        """Keeps the account as it now stands for who is asking (after a profile change
        on this instance; other instances read it afresh within RECENT_USER_SECONDS)."""
        self._recent_users.keep(str(user.id), user)

    async def get(self, user_id: PydanticObjectId) -> UserDoc | None:
        return await UserDoc.get(user_id)

    async def get_many(self, user_ids: list[PydanticObjectId]) -> dict[PydanticObjectId, UserDoc]:
        """The users that exist among the ids, by id."""
        if not user_ids:
            return {}
        users = await UserDoc.find({"_id": {"$in": list(set(user_ids))}}).to_list()
        return {user.id: user for user in users if user.id is not None}
