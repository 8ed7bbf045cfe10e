"""Graceful shutdown: after SIGTERM, new requests get 503 while running ones (streams included)
get up to `server.drain_seconds` to finish; then uvicorn's own shutdown proceeds.

Keeping the listener open while draining lets a gateway see a clean, retryable 503 instead of a
refused connection while it notices the replica is going away.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from chatspark.api.errors import error_response
from chatspark.errors import ServiceUnavailable

log = logging.getLogger("chatspark")


class Drain:
    def __init__(self, app: ASGIApp, drain_seconds: float) -> None:
        self.app = app
        self.drain_seconds = drain_seconds
        self.draining = False
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.draining:
            error = ServiceUnavailable("This replica is shutting down; retry the request.", headers={"retry-after": "1"})
            await error_response(error, {"connection": "close"})(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def install(self) -> None:
        """Chains our SIGTERM handler in front of uvicorn's (signals reach the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            # Python runs a signal handler in whatever context the main thread is in at that moment,
            # often a request's task: in a fresh one, the drain's lines, the task it starts and
            # uvicorn's shutdown lines carry no request's id.
            contextvars.Context().run(start_draining, sig, frame)

        def start_draining(sig: int, frame: FrameType | None) -> None:
            if self.draining or not callable(previous):  # a second SIGTERM: stop now
                _call(previous, sig, frame)
                return
            self.draining = True
            log.info("SIGTERM: draining %d running requests for up to %gs", self.in_flight, self.drain_seconds)
            loop.call_soon_threadsafe(lambda: loop.create_task(self._then(previous, sig)))

        signal.signal(signal.SIGTERM, on_sigterm)

    async def _then(self, previous: Any, sig: int) -> None:
        deadline = time.monotonic() + self.drain_seconds
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("drained (%d requests still running); shutting down", self.in_flight)
        _call(previous, sig, None)


def _call(handler: Any, sig: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(sig, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
