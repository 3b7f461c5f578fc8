"""Rate limits: named budgets per subject (a user, a username, an address) in Redis.

Each ``Limit`` allows ``count`` calls at once, refilled evenly over ``seconds``: the
generic cell rate algorithm (GCRA), which keeps one number per subject, the
theoretical arrival time of the next call. One Lua script reads and moves it, so a
check is atomic and one round trip, and every instance shares the budget. A refused
call writes nothing and raises ``RateLimited`` with the seconds until it would pass.

Three ways to use a budget:

- ``hit``: the call spends one if every named budget has one, or none at all;
- ``check`` then ``spend``: for failures only (wrong passwords) — check before the
  work, spend once it failed;
- a cooldown is a budget of one over its length: ``spend`` when it starts, ``check``
  before the action it holds back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from backends.redis import KeyValueStore
from backends.redis_slots import positions_by_slot
from errors import ConfigError, RateLimited
from settings import Settings

KEY_PREFIX = "limit"
# Subjects come from clients (a username at logIn): bounded so a key stays small.
MAX_SUBJECT_CHARS = 100

# KEYS: one per budget. ARGV[1]: mode; then per key its interval (ms per call) and count.
# Returns the milliseconds until a call would pass every budget (0 when it passes now)
# and the position of the budget that waits longest.
#   hit   spends one from every budget when all pass, nothing otherwise
#   check writes nothing
#   spend spends one from every budget, passing or not
_GCRA_BODY = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local mode = argv[1]
local wait = 0
local worst = 1
local next_tats = {}
for i, key in ipairs(keys) do
  local interval = tonumber(argv[2 * i])
  local count = tonumber(argv[2 * i + 1])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  next_tats[i] = tat + interval
  local allowed_at = next_tats[i] - interval * count
  if allowed_at - now > wait then
    wait = allowed_at - now
    worst = i
  end
end
if mode == 'spend' or (mode == 'hit' and wait <= 0) then
  for i, key in ipairs(keys) do
    -- At least 1 ms: with a budget of millions an interval is below a float's step
    -- at this time, the sum equals now, and PX 0 is refused.
    redis.call('SET', key, tostring(next_tats[i]), 'PX', math.max(1, math.ceil(next_tats[i] - now)))
  end
end
return {math.ceil(wait), worst}
"""
_GCRA = "local keys, argv = KEYS, ARGV\n" + _GCRA_BODY
# The same for a call made in a session: KEYS[1] must still hold ARGV[1] (the session
# is live), or the script spends nothing and returns {-1, 0}; the budgets follow.
_GCRA_IN_SESSION = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1, 0} end
local unpack_all = table.unpack or unpack
local keys, argv = {unpack_all(KEYS, 2)}, {unpack_all(ARGV, 2)}
"""
    + _GCRA_BODY
)


class LimitName(StrEnum):
    """Every budget Plop keeps; the value is part of the Redis key."""

    SEND_MESSAGE = "send-message"
    SET_TYPING = "set-typing"
    CREATE_ROOM = "create-room"
    INVITE_MEMBERS = "invite-members"
    SEND_FRIEND_REQUEST = "send-friend-request"
    FRIEND_REQUEST_COOLDOWN = "friend-request-cooldown"
    FAILED_LOG_IN_PER_USERNAME = "failed-log-in-user"
    FAILED_LOG_IN_PER_ADDRESS = "failed-log-in-address"
    SIGN_UP_PER_ADDRESS = "sign-up-address"
    LOG_IN_PER_USERNAME = "log-in-user"
    LOG_IN_PER_ADDRESS = "log-in-address"
    EDIT_MESSAGE = "edit-message"
    DELETE_MESSAGE = "delete-message"
    MARK_READ = "mark-read"
    SEARCH_USERS = "search-users"
    SEARCH_MESSAGES = "search-messages"
    SYNC = "sync"
    REGISTER_PUSH_DEVICE = "register-push-device"
    LEAVE_ROOM = "leave-room"
    UPDATE_ROOM = "update-room"
    REMOVE_MEMBER = "remove-member"
    SET_MEMBER_ROLE = "set-member-role"
    BLOCK_USER = "block-user"
    CHANGE_PASSWORD = "change-password"
    END_SESSION = "end-session"
    DELETE_ACCOUNT = "delete-account"
    ROOM_INVITATION = "room-invitation"
    ROOM_INVITATION_COOLDOWN = "room-invitation-cooldown"
    MUTE_ROOM = "mute-room"
    REACT = "react"
    CREATE_UPLOAD = "create-upload"
    UPDATE_PROFILE = "update-profile"
    PERSIST_QUERY = "persist-query"


# What a refusal says was too much, by limit.
_REFUSALS = {
    LimitName.SEND_MESSAGE: "too many messages sent",
    LimitName.SET_TYPING: "too many typing notices sent",
    LimitName.CREATE_ROOM: "too many rooms created",
    LimitName.INVITE_MEMBERS: "too many invitations sent",
    LimitName.SEND_FRIEND_REQUEST: "too many friend requests sent",
    LimitName.FRIEND_REQUEST_COOLDOWN: "this user declined your friend request recently",
    LimitName.FAILED_LOG_IN_PER_USERNAME: "too many failed log-ins for this username",
    LimitName.FAILED_LOG_IN_PER_ADDRESS: "too many failed log-ins from this address",
    LimitName.SIGN_UP_PER_ADDRESS: "too many sign-ups from this address",
    LimitName.LOG_IN_PER_USERNAME: "too many log-ins for this username",
    LimitName.LOG_IN_PER_ADDRESS: "too many log-ins from this address",
    LimitName.EDIT_MESSAGE: "too many messages edited",
    LimitName.DELETE_MESSAGE: "too many messages deleted",
    LimitName.MARK_READ: "too many read markers set",
    LimitName.SEARCH_USERS: "too many user searches",
    LimitName.SEARCH_MESSAGES: "too many message searches",
    LimitName.SYNC: "too many syncs",
    LimitName.REGISTER_PUSH_DEVICE: "too many push devices registered",
    LimitName.LEAVE_ROOM: "too many rooms left",
    LimitName.UPDATE_ROOM: "too many rooms renamed",
    LimitName.REMOVE_MEMBER: "too many members removed",
    LimitName.SET_MEMBER_ROLE: "too many roles changed",
    LimitName.BLOCK_USER: "too many blocks and unblocks",
    LimitName.CHANGE_PASSWORD: "too many password changes",
    LimitName.END_SESSION: "too many sessions ended",
    LimitName.DELETE_ACCOUNT: "too many account deletions tried",
    LimitName.ROOM_INVITATION: "too many group invitations sent",
    LimitName.ROOM_INVITATION_COOLDOWN: (
        "one or more of these users declined an invitation of yours recently"
    ),
    LimitName.MUTE_ROOM: "too many mutes and unmutes",
    LimitName.REACT: "too many reactions added or removed",
    LimitName.CREATE_UPLOAD: "too many uploads",
    LimitName.UPDATE_PROFILE: "too many profile changes",
    LimitName.PERSIST_QUERY: "too many persisted queries registered",
}


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` calls at once, refilled evenly over ``seconds``."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0:
            raise ConfigError(f"a limit needs a count of 1 or more over a positive time: {self}")

    @property
    def interval_ms(self) -> float:
        return self.seconds * 1000 / self.count


def limits_from_settings(settings: Settings) -> dict[LimitName, Limit]:
    s = settings
    return {
        LimitName.SEND_MESSAGE: Limit(s.send_message_limit, s.send_message_limit_seconds),
        LimitName.SET_TYPING: Limit(s.set_typing_limit, s.set_typing_limit_seconds),
        LimitName.CREATE_ROOM: Limit(s.create_room_limit, s.create_room_limit_seconds),
        LimitName.INVITE_MEMBERS: Limit(s.invite_members_limit, s.invite_members_limit_seconds),
        LimitName.SEND_FRIEND_REQUEST: Limit(
            s.send_friend_request_limit, s.send_friend_request_limit_seconds
        ),
        LimitName.FRIEND_REQUEST_COOLDOWN: Limit(1, s.friend_request_cooldown_seconds),
        LimitName.FAILED_LOG_IN_PER_USERNAME: Limit(
            s.failed_log_in_per_username_limit, s.failed_log_in_per_username_limit_seconds
        ),
        LimitName.FAILED_LOG_IN_PER_ADDRESS: Limit(
            s.failed_log_in_per_address_limit, s.failed_log_in_per_address_limit_seconds
        ),
        LimitName.SIGN_UP_PER_ADDRESS: Limit(
            s.sign_up_per_address_limit, s.sign_up_per_address_limit_seconds
        ),
        LimitName.LOG_IN_PER_USERNAME: Limit(
            s.log_in_per_username_limit, s.log_in_per_username_limit_seconds
        ),
        LimitName.LOG_IN_PER_ADDRESS: Limit(
            s.log_in_per_address_limit, s.log_in_per_address_limit_seconds
        ),
        LimitName.EDIT_MESSAGE: Limit(s.edit_message_limit, s.edit_message_limit_seconds),
        LimitName.DELETE_MESSAGE: Limit(s.delete_message_limit, s.delete_message_limit_seconds),
        LimitName.MARK_READ: Limit(s.mark_read_limit, s.mark_read_limit_seconds),
        LimitName.SEARCH_USERS: Limit(s.search_users_limit, s.search_users_limit_seconds),
        LimitName.SEARCH_MESSAGES: Limit(s.search_messages_limit, s.search_messages_limit_seconds),
        LimitName.SYNC: Limit(s.sync_limit, s.sync_limit_seconds),
        LimitName.REGISTER_PUSH_DEVICE: Limit(
            s.register_push_device_limit, s.register_push_device_limit_seconds
        ),
        LimitName.LEAVE_ROOM: Limit(s.leave_room_limit, s.leave_room_limit_seconds),
        LimitName.UPDATE_ROOM: Limit(s.update_room_limit, s.update_room_limit_seconds),
        LimitName.REMOVE_MEMBER: Limit(s.remove_member_limit, s.remove_member_limit_seconds),
        LimitName.SET_MEMBER_ROLE: Limit(s.set_member_role_limit, s.set_member_role_limit_seconds),
        LimitName.BLOCK_USER: Limit(s.block_user_limit, s.block_user_limit_seconds),
        LimitName.CHANGE_PASSWORD: Limit(s.change_password_limit, s.change_password_limit_seconds),
        LimitName.END_SESSION: Limit(s.end_session_limit, s.end_session_limit_seconds),
        LimitName.DELETE_ACCOUNT: Limit(s.delete_account_limit, s.delete_account_limit_seconds),
        LimitName.ROOM_INVITATION: Limit(s.room_invitation_limit, s.room_invitation_limit_seconds),
        LimitName.ROOM_INVITATION_COOLDOWN: Limit(1, s.room_invitation_cooldown_seconds),
        LimitName.MUTE_ROOM: Limit(s.mute_room_limit, s.mute_room_limit_seconds),
        LimitName.REACT: Limit(s.react_limit, s.react_limit_seconds),
        LimitName.CREATE_UPLOAD: Limit(s.create_upload_limit, s.create_upload_limit_seconds),
        LimitName.UPDATE_PROFILE: Limit(s.update_profile_limit, s.update_profile_limit_seconds),
        LimitName.PERSIST_QUERY: Limit(s.persist_query_limit, s.persist_query_limit_seconds),
    }


Budget = tuple[LimitName, str]
"""A limit and its subject, e.g. ``(LimitName.SEND_MESSAGE, user_id)``."""


class RateLimiter:
    """Checks and spends budgets; every method is one Redis round trip (one per slot of
    its budgets on a cluster, made at once)."""

    def __init__(self, redis: KeyValueStore, limits: dict[LimitName, Limit]) -> None:
        self._redis = redis
        self._limits = limits
        self._script = redis.register_script(_GCRA)
        self._in_session = redis.register_script(_GCRA_IN_SESSION)

    async def hit(self, name: LimitName, subject: str) -> None:
        """Spends one call of the budget; RATE_LIMITED (spending nothing) if it is empty."""
        await self._run("hit", [(name, subject)])

    async def hit_in_session(
        self, name: LimitName, subject: str, session_key: str, session_value: str
    ) -> bool:
        """``hit``, only while ``session_key`` holds ``session_value`` (a live session
        of the subject), checked in the same round trip: False, spending nothing, if it
        does not. On a cluster the session's key is in another slot: read before."""
        key = _key(name, subject)
        if len(positions_by_slot(self._redis, [session_key, key])) > 1:
            if await self._redis.get(session_key) != session_value:
                return False
            await self.hit(name, subject)
            return True
        limit = self._limits[name]
        wait_ms, _ = await self._in_session(
            keys=[session_key, key], args=[session_value, "hit", limit.interval_ms, limit.count]
        )
        if int(wait_ms) < 0:
            return False
        _refuse_past(int(wait_ms), name)
        return True

    async def check(self, *budgets: Budget) -> None:
        """RATE_LIMITED if a ``hit`` of these budgets would be refused; writes nothing."""
        await self._run("check", list(budgets))

    async def spend(self, *budgets: Budget) -> None:
        """Spends one call of each budget, refused or not (a failure that happened)."""
        await self._run("spend", list(budgets))

    async def _run(self, mode: str, budgets: list[Budget]) -> None:
        keys = [_key(name, subject) for name, subject in budgets]
        # Each budget is a key of its own subject: on a cluster they are in several
        # slots, and the script runs once per slot. Only ``hit``, which must spend from
        # all or none, needs them in one script, and it is only ever given one budget.
        groups = positions_by_slot(self._redis, keys)
        if not groups:
            return
        answers = await asyncio.gather(
            *(self._call(mode, budgets, keys, group) for group in groups)
        )
        wait_ms, worst = max(answers)
        if mode != "spend":
            _refuse_past(wait_ms, budgets[worst][0])

    async def _call(
        self, mode: str, budgets: list[Budget], keys: list[str], group: list[int]
    ) -> tuple[int, int]:
        """The script over the budgets at these positions: the longest wait (ms) and the
        position of the budget that waits it."""
        args: list[str | float | int] = [mode]
        for position in group:
            limit = self._limits[budgets[position][0]]
            args += [limit.interval_ms, limit.count]
        wait_ms, worst = await self._script(keys=[keys[i] for i in group], args=args)
        return int(wait_ms), group[int(worst) - 1]


def _key(name: LimitName, subject: str) -> str:
    return f"{KEY_PREFIX}:{name.value}:{subject[:MAX_SUBJECT_CHARS]}"


def _refuse_past(wait_ms: int, name: LimitName) -> None:
    """RATE_LIMITED when the budget's next call is ``wait_ms`` away (> 0)."""
    if wait_ms > 0:
        retry_after = wait_ms / 1000
        what = _REFUSALS[name]
        raise RateLimited(f"{what}; retry in {retry_after:g} s", retry_after=retry_after)
