"""Friends: requests, friendships, and user search."""

from __future__ import annotations

import re
from contextlib import suppress

from beanie import PydanticObjectId, SortDirection
from beanie.operators import Or
from pymongo.errors import DuplicateKeyError

from errors import BadUserInput, Conflict, Forbidden, NotFound
from models import FriendRequestDoc, FriendshipDoc, UserDoc
from models.friend import FriendRequestStatus
from models.time import utc_now
from pubsub import FriendshipChanged
from services.blocklist import blocks, refuse_if_blocked
from services.publisher import EventPublisher
from services.rate_limits import LimitName, RateLimiter

MAX_SEARCH_RESULTS = 50
MAX_QUERY_CHARS = 64


def _open_key(from_id: PydanticObjectId, to_id: PydanticObjectId) -> str:
    return f"{from_id}:{to_id}"


class FriendService:
    """The rules of friendship; presence reads ``are_friends`` and ``friend_ids``."""

    def __init__(self, publisher: EventPublisher, limits: RateLimiter) -> None:
        self._publisher = publisher
        self._limits = limits

    async def search(self, viewer: UserDoc, query: str, first: int | None) -> list[UserDoc]:
        """Users whose username or display name starts with the query, any letter case."""
        await self._limits.hit(LimitName.SEARCH_USERS, str(viewer.id))
        size = 20 if first is None else first
        if not 1 <= size <= MAX_SEARCH_RESULTS:
            raise BadUserInput(f"first must be between 1 and {MAX_SEARCH_RESULTS}")
        prefix = query.strip().lower()
        if not prefix or len(prefix) > MAX_QUERY_CHARS:
            raise BadUserInput(f"query must be 1 to {MAX_QUERY_CHARS} characters long")
        pattern = "^" + re.escape(prefix)
        found = (
            await UserDoc.find(
                Or({"username": {"$regex": pattern}}, {"display_name_key": {"$regex": pattern}}),
                {"_id": {"$ne": viewer.id}},
                {"deletion_started_at": None},  # a deleted account is found by nobody
            )
            .sort([("username", SortDirection.ASCENDING)])
            .limit(size)
            .to_list()
        )
        return found

    async def friend_ids(self, user_id: PydanticObjectId) -> list[PydanticObjectId]:
        return [
            friendship.friend_id
            for friendship in await FriendshipDoc.find(FriendshipDoc.owner_id == user_id).to_list()
        ]

    async def friends(self, viewer: UserDoc) -> list[UserDoc]:
        assert viewer.id is not None
        ids = await self.friend_ids(viewer.id)
        users = (
            await UserDoc.find({"_id": {"$in": ids}})
            .sort([("username", SortDirection.ASCENDING)])
            .to_list()
        )
        return users

    async def friends_among(
        self, user_id: PydanticObjectId, candidates: list[PydanticObjectId]
    ) -> set[PydanticObjectId]:
        """Those of the candidates who are the user's friends, in one query."""
        if not candidates:
            return set()
        found = await FriendshipDoc.find(
            {"owner_id": user_id, "friend_id": {"$in": candidates}}
        ).to_list()
        return {friendship.friend_id for friendship in found}

    async def are_friends(self, user_id: PydanticObjectId, other_id: PydanticObjectId) -> bool:
        return (
            await FriendshipDoc.find_one(
                FriendshipDoc.owner_id == user_id, FriendshipDoc.friend_id == other_id
            )
            is not None
        )

    async def pending_requests(self, viewer: UserDoc) -> list[FriendRequestDoc]:
        """Pending requests the viewer sent or received, newest first."""
        return (
            await FriendRequestDoc.find(
                Or(FriendRequestDoc.from_id == viewer.id, FriendRequestDoc.to_id == viewer.id),
                FriendRequestDoc.status == FriendRequestStatus.PENDING,
            )
            .sort([("created_at", SortDirection.DESCENDING)])
            .to_list()
        )

    async def send_request(self, viewer: UserDoc, to_id: PydanticObjectId) -> FriendRequestDoc:
        """A pending request; if the other user already asked the viewer, theirs is accepted."""
        assert viewer.id is not None
        # A decline holds the same request back for a while; neither refusal spends.
        await self._limits.check((LimitName.FRIEND_REQUEST_COOLDOWN, _open_key(viewer.id, to_id)))
        await self._limits.hit(LimitName.SEND_FRIEND_REQUEST, str(viewer.id))
        if to_id == viewer.id:
            raise BadUserInput("you cannot befriend yourself")
        to_user = await UserDoc.get(to_id)
        if to_user is None or to_user.deletion_started_at is not None:
            raise NotFound("no such user")
        await refuse_if_blocked(viewer.id, [to_id], "you cannot send this user a friend request")
        if await blocks(viewer.id, to_id):
            raise Conflict("you block this user: unblock them first")
        if await self.are_friends(viewer.id, to_id):
            raise Conflict("you are already friends")
        theirs = await FriendRequestDoc.find_one(
            FriendRequestDoc.open_key == _open_key(to_id, viewer.id)
        )
        if theirs is not None:
            return await self._answer(theirs, accept=True)
        request = FriendRequestDoc(
            from_id=viewer.id, to_id=to_id, open_key=_open_key(viewer.id, to_id)
        )
        try:
            await request.insert()
        except DuplicateKeyError as exc:
            raise Conflict("you already sent this user a friend request") from exc
        return request

    async def respond(
        self, viewer: UserDoc, request_id: PydanticObjectId, accept: bool
    ) -> FriendRequestDoc:
        """Accepts or declines a pending request sent to the viewer."""
        request = await FriendRequestDoc.get(request_id)
        if request is None:
            raise NotFound("no such friend request")
        if request.to_id != viewer.id:
            raise Forbidden("only the recipient can answer a friend request")
        if request.status is not FriendRequestStatus.PENDING:
            raise Conflict("this friend request was already answered")
        return await self._answer(request, accept)

    async def _answer(self, request: FriendRequestDoc, accept: bool) -> FriendRequestDoc:
        assert request.id is not None
        request.status = FriendRequestStatus.ACCEPTED if accept else FriendRequestStatus.DECLINED
        request.responded_at = utc_now()
        request.open_key = f"{request.open_key}:{request.id}"
        await request.save()
        if accept:
            await self._befriend(request.from_id, request.to_id)
        else:  # the sender may not ask again for a while
            cooldown = (
                LimitName.FRIEND_REQUEST_COOLDOWN,
                _open_key(request.from_id, request.to_id),
            )
            await self._limits.spend(cooldown)
        return request

    async def _befriend(self, first: PydanticObjectId, second: PydanticObjectId) -> None:
        for owner, friend in ((first, second), (second, first)):
            with suppress(DuplicateKeyError):  # already there: befriending is idempotent
                await FriendshipDoc(owner_id=owner, friend_id=friend).insert()
        for owner, friend in ((first, second), (second, first)):
            await self._publisher.publish(
                FriendshipChanged(user_id=str(owner), friend_id=str(friend), added=True)
            )

    async def remove(self, viewer: UserDoc, friend_id: PydanticObjectId) -> None:
        """Ends the friendship both ways; NOT_FOUND if there is none."""
        assert viewer.id is not None
        if not await self.are_friends(viewer.id, friend_id):
            raise NotFound("you are not friends with this user")
        await self._unfriend(viewer.id, friend_id)

    async def sever(self, first: PydanticObjectId, second: PydanticObjectId) -> None:
        """Ends any friendship of the two and declines the requests pending between them."""
        if await self.are_friends(first, second) or await self.are_friends(second, first):
            await self._unfriend(first, second)
        for from_id, to_id in ((first, second), (second, first)):
            pending = await FriendRequestDoc.find_one(
                FriendRequestDoc.open_key == _open_key(from_id, to_id)
            )
            if pending is not None:
                await self._answer(pending, accept=False)

    async def forget(self, user_id: PydanticObjectId) -> None:
        """Ends every friendship of the user (both ways, as removeFriend does) and
        removes every friend request from or to them (the deletion of an account)."""
        sides = await FriendshipDoc.find(
            Or(FriendshipDoc.owner_id == user_id, FriendshipDoc.friend_id == user_id)
        ).to_list()
        others = {side.friend_id if side.owner_id == user_id else side.owner_id for side in sides}
        for other in others:
            await self._unfriend(user_id, other)
        await FriendRequestDoc.find(
            Or(FriendRequestDoc.from_id == user_id, FriendRequestDoc.to_id == user_id)
        ).delete()

    async def _unfriend(self, first: PydanticObjectId, second: PydanticObjectId) -> None:
        for owner, friend in ((first, second), (second, first)):
            await FriendshipDoc.find(
                FriendshipDoc.owner_id == owner, FriendshipDoc.friend_id == friend
            ).delete()
        for owner, friend in ((first, second), (second, first)):
            await self._publisher.publish(
                FriendshipChanged(user_id=str(owner), friend_id=str(friend), added=False)
            )
