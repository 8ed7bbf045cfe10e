"""An ASGI response for server-sent events: pings while the producer is silent, cancel on disconnect.

Starlette's StreamingResponse notices a vanished client only when a write fails, which for a
silent model can be minutes; here a watcher reads `http.disconnect` and cancels the producer at
once, which closes the model's upstream connection.
"""

from __future__ import annotations

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
        self.headers = {**HEADERS, **(headers or {})}
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
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": PING, "more_body": True})
        events_out, events_in = anyio.create_memory_object_stream[bytes](16)

        async with anyio.create_task_group() as tasks:

            async def produce() -> None:
                async with events_out, aclosing(self.events) as events:  # type: ignore[type-var]
                    async for event in events:
                        await events_out.send(event)

            finished = False

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not finished:
                    log.info("client disconnected; cancelling the stream")
                tasks.cancel_scope.cancel()

            tasks.start_soon(watch_disconnect)
            tasks.start_soon(produce)
            async with events_in:
                while True:
                    event = None
                    with anyio.move_on_after(self.ping_seconds):
                        try:
                            event = await events_in.receive()
                        except anyio.EndOfStream:
                            break
                    await send({"type": "http.response.body", "body": event or PING, "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tasks.cancel_scope.cancel()
