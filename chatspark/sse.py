"""An ASGI response for server-sent events: pings while the producer is silent, cancel on disconnect.

Starlette's StreamingResponse notices a vanished client only when a write fails, which for a
silent model can be minutes; here a watcher reads `http.disconnect` and cancels the producer at
once, which closes the model's upstream connection.

Per event this costs a list append and, when the writer is idle, one future: the producer task
queues events, the writer sends whatever queued up since its last send in one `send()` (a
provider's burst of chunks read at once leaves as one write), and one timer per ping interval (not
one cancel scope per event) decides when a silence needs a ping (bench/profiles/stream.md). The
queue is bounded: a client that stops reading stops the reads from the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing

import anyio
from starlette.types import Receive, Scope, Send

from chatspark import metrics

log = logging.getLogger("chatspark.sse")

# A comment line alone, without the blank line that ends an event: the spec ignores both forms,
# but @microsoft/fetch-event-source dispatches an empty message at every blank line. Pings only go
# out between whole events, so the line never splits one.
PING = b": ping\n"

HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    # Never compressed: a gzip layer would hold events back until its buffer fills.
    "content-encoding": "identity",
}
_RAW_HEADERS = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]


class EventStream:
    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        ping_seconds: float,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.events = events
        self.ping_seconds = ping_seconds
        self.headers = {**HEADERS, **headers} if headers else HEADERS
        # Runs however the response ends, even if the producer never started (a client that left
        # at once): it releases what the producer would have released.
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with metrics.OPEN_STREAMS.track_inprogress():
                await self._respond(receive, send)
        finally:
            if self.on_close is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_close()

    async def _respond(self, receive: Receive, send: Send) -> None:
        raw_headers = _RAW_HEADERS if self.headers is HEADERS else [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()
        ]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": PING, "more_body": True})
        loop = asyncio.get_running_loop()
        relay = _Relay(loop, self.ping_seconds)
        # Two plain asyncio tasks (the backends are asyncio's already): an anyio task group's spawns
        # were ~4% of a worker's CPU while 2,000 streams opened (bench/profiles/stream.md).
        producer = loop.create_task(relay.produce(self.events))
        watcher = loop.create_task(relay.watch_disconnect(receive, producer))
        try:
            await relay.write(send)
        finally:
            relay.stop_pings()
            watcher.cancel()
            producer.cancel()  # (a no-op once it returned) closes the upstream when we are cancelled
            await asyncio.wait((producer, watcher))
            if not watcher.cancelled() and watcher.exception() is not None:  # a receive() that failed
                log.warning("the disconnect watcher failed", exc_info=watcher.exception())
        if relay.failure is not None:
            raise relay.failure
        if not relay.disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Relay:
    """The queue between one producer task and the response's writer, and the ping timer."""

    __slots__ = ("_loop", "_ping_seconds", "_pending", "_waiter", "_room", "_ended", "_ping_due", "_last_sent",
                 "_timer", "disconnected", "failure")

    # Events queued at most: past this the producer waits for the writer, so a client that stops
    # reading stops the reads from the model too (backpressure up to the provider's socket) instead
    # of the whole answer piling up here.
    MAX_QUEUED = 32

    def __init__(self, loop: asyncio.AbstractEventLoop, ping_seconds: float) -> None:
        self._loop = loop
        self._ping_seconds = ping_seconds
        self._pending: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None  # while the writer has nothing to send
        self._room: asyncio.Future[None] | None = None  # while the producer waits for the writer
        self._ended = False  # the producer returned, failed, or was cancelled
        self._ping_due = False
        self._last_sent = loop.time()
        self._timer: asyncio.TimerHandle | None = loop.call_at(self._last_sent + ping_seconds, self._tick)
        self.disconnected = False  # the client left before the stream ended
        self.failure: Exception | None = None  # what the producer raised

    async def produce(self, events: AsyncIterator[bytes]) -> None:
        pending = self._pending
        try:
            async with aclosing(events) as each:  # type: ignore[type-var]
                async for event in each:
                    pending.append(event)
                    self._wake()
                    if len(pending) >= self.MAX_QUEUED:
                        self._room = self._loop.create_future()
                        try:
                            await self._room
                        finally:
                            self._room = None
        except Exception as exc:
            self.failure = exc
        finally:
            self._ended = True
            self._wake()

    async def watch_disconnect(self, receive: Receive, producer: asyncio.Task[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._ended:
            log.info("client disconnected; cancelling the stream")
        self.disconnected = True
        producer.cancel()
        self._wake()

    async def write(self, send: Send) -> None:
        """Sends queued events (all of them in one message) until the producer has ended."""
        pending = self._pending
        loop = self._loop
        while not self.disconnected:
            if pending:
                body = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                room = self._room
                if room is not None and not room.done():
                    room.set_result(None)
                self._ping_due = False
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self._last_sent = loop.time()
            elif self._ended:
                return
            elif self._ping_due:
                self._ping_due = False
                await send({"type": "http.response.body", "body": PING, "more_body": True})
                self._last_sent = loop.time()
            else:
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def stop_pings(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        """Once per ping interval: a ping when nothing went out for a whole interval."""
        now = self._loop.time()
        due = self._last_sent + self._ping_seconds
        if now >= due:
            self._ping_due = True
            self._wake()
            due = now + self._ping_seconds
        self._timer = self._loop.call_at(due, self._tick)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
