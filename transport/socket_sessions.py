"""Open sockets end with their session: logOut, expiry, or a revocation missed.

Every socket that passed connection_init is watched here under its session. It
ends (``SocketSessions.watch``'s ``end`` callback: 4401 on graphql-transport-ws,
``connection_error`` on graphql-ws) when:
- a ``SessionEnded`` event for its session reaches this instance (logOut on any
  instance; the instance that served logOut dispatches it locally first);
- the session's time runs out (a timer set from its TTL at connection_init);
- a periodic check finds the session gone from the store (a revocation whose event
  was lost while the broker was down), at least once per presence heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from auth.sessions import SessionInfo, SessionStore
from live.hub import FanoutHub
from pubsub import Event, SessionEnded, user_route


class WatchedSocket:
    """One socket under its session; the hub hands it its user's events."""

    __slots__ = ("_end", "_expiry", "ended", "session")

    def __init__(self, session: SessionInfo, end: Callable[[], None]) -> None:
        self.session = session
        self._end = end
        self.ended = False
        self._expiry: asyncio.TimerHandle | None = None

    def offer(self, event: Event) -> None:
        if isinstance(event, SessionEnded) and event.session_id == self.session.session_id:
            self.end()

    def missed(self) -> None:
        """A missed SessionEnded is found by ``SocketSessions.check``, which runs
        periodically for every socket."""

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._expiry is not None:
            self._expiry.cancel()
        self._end()


class SocketSessions:
    """This instance's authenticated sockets, by session."""

    def __init__(self, hub: FanoutHub, sessions: SessionStore) -> None:
        self._hub = hub
        self._sessions = sessions
        self._sockets: set[WatchedSocket] = set()

    def watch(self, session: SessionInfo, end: Callable[[], None]) -> WatchedSocket:
        """Calls ``end`` once, when the session ends; ``unwatch`` when the socket closes."""
        socket = WatchedSocket(session, end)
        self._sockets.add(socket)
        self._hub.attach(user_route(session.user_id), socket)
        socket._expiry = asyncio.get_running_loop().call_later(
            session.expires_in_seconds, socket.end
        )
        return socket

    def unwatch(self, socket: WatchedSocket) -> None:
        if socket._expiry is not None:
            socket._expiry.cancel()
        self._sockets.discard(socket)
        self._hub.detach(user_route(socket.session.user_id), socket)

    async def check(self) -> int:
        """Ends the sockets whose session is gone from the store; returns how many."""
        sockets = [socket for socket in self._sockets if not socket.ended]
        if not sockets:
            return 0
        live = await self._sessions.live(socket.session.session_id for socket in sockets)
        await self._sessions.seen(live)  # a session holding a socket is in use
        ended = [socket for socket in sockets if socket.session.session_id not in live]
        for socket in ended:
            socket.end()
        return len(ended)
