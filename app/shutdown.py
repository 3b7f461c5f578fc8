"""A graceful stop: on SIGTERM the process drains, then lets uvicorn stop it.

What uvicorn does by itself on SIGTERM (``uvicorn.Server.shutdown``, 0.54): it stops
listening, and at once sends every open WebSocket a close with 1012 (frames the app
still had queued are lost), lets HTTP requests in flight finish (bounded by
``timeout_graceful_shutdown``, unbounded by default), and only then runs the app's
lifespan shutdown. So Plop's own work must come first, between the signal and
uvicorn's shutdown; ``GracefulStop`` stands in front of uvicorn's signal handler:

1. ``/readyz`` answers 503 ``draining`` (``observability.health.start_draining``)
   and new WebSocket handshakes are refused (``transport.draining``);
2. for ``notice_seconds`` the process keeps serving, so that a load balancer that
   probes ``/readyz`` sends it nothing new before its sockets move;
3. every open socket gets the frames queued for it, then a close with 1012: its
   client resumes on another instance with afterSeq;
4. uvicorn's own shutdown follows: the listener closes, requests in flight
   (mutations) finish, and the lifespan flushes the published marks and closes the
   backends (``app.runtime``).

A watchdog thread ends the process ``shutdown_seconds`` after the signal whatever
is still running, so an orchestrator never has to kill it for hanging. A second
signal goes straight to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from starlette.datastructures import State

from observability.health import start_draining
from observability.stacks import still_running
from transport.draining import OpenSockets

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Exit status of a stop that the watchdog had to cut short.
WATCHDOG_EXIT_STATUS = 70
# Of the stop's budget: at most this share for the notice, the rest for the sockets'
# flush and uvicorn's and the lifespan's own shutdown.
NOTICE_SHARE = 0.5

SignalHandler = Callable[[int, FrameType | None], Any]


class GracefulStop:
    """Drains the process on the first stop signal, then hands it to uvicorn."""

    def __init__(
        self,
        state: State,
        sockets: OpenSockets,
        *,
        shutdown_seconds: float,
        notice_seconds: float,
    ) -> None:
        self._state = state
        self._sockets = sockets
        self._shutdown_seconds = shutdown_seconds
        self._notice_seconds = min(notice_seconds, shutdown_seconds * NOTICE_SHARE)
        self._loop = asyncio.get_running_loop()
        self._uvicorn: dict[int, SignalHandler] = {}
        self._signalled = False
        self._draining: asyncio.Task[None] | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Stands in front of the server's stop signal handlers for the block.

        Only a handler a server installed is wrapped (not the default or an ignored
        signal): outside a server, e.g. an app driven by tests, nothing changes.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if callable(handler):
                self._uvicorn[number] = handler
                signal.signal(number, self._on_signal)
        try:
            yield
        finally:
            for wrapped, handler in self._uvicorn.items():
                if signal.getsignal(wrapped) == self._on_signal:
                    signal.signal(wrapped, handler)

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if self._signalled:
            self._uvicorn[number](number, frame)  # a second signal: no more waiting
            return
        self._signalled = True
        _start_watchdog(self._shutdown_seconds, self._loop)
        # A fresh context: the signal may land while a request's context is current.
        self._loop.call_soon_threadsafe(self._begin, number, context=contextvars.Context())

    def _begin(self, number: int) -> None:
        draining = self._loop.create_task(self.drain(), name="graceful-stop")
        draining.add_done_callback(lambda _: self._uvicorn[number](number, None))
        self._draining = draining  # the loop keeps only a weak reference to a task

    async def drain(self) -> None:
        """Steps 1 to 3; uvicorn's shutdown follows when this returns."""
        logger.info(
            "stopping: draining",
            extra={"notice_seconds": self._notice_seconds, "sockets": len(self._sockets)},
        )
        start_draining(self._state)
        try:
            await asyncio.sleep(self._notice_seconds)
            # The notice and this flush take at most the budget's first half; the
            # rest is uvicorn's and the lifespan's.
            flush_seconds = self._shutdown_seconds * NOTICE_SHARE - self._notice_seconds
            closed = await self._sockets.close_all(max(flush_seconds, 0.1))
        except Exception:
            logger.exception("draining failed; stopping anyway")
            return
        logger.info("stopping: sockets closed", extra={"sockets": closed})


def _start_watchdog(seconds: float, loop: asyncio.AbstractEventLoop) -> None:
    """Ends the process ``seconds`` from now, even if its event loop is stuck."""

    def expire() -> None:
        logger.error(
            "stop took too long; exiting",
            extra={"shutdown_seconds": seconds, "still_running": still_running(loop)},
        )
        logging.shutdown()
        os._exit(WATCHDOG_EXIT_STATUS)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
