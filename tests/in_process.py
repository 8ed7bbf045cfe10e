"""The app served without a socket: its lifespan runs once in an event loop of its own thread (as
in a uvicorn worker), and sync httpx clients reach it through `httpx.ASGITransport` on that loop.

What a socket adds is not here: the HTTP parser, chunked framing, a body arriving bit by bit (the
whole response is read before the client sees it), client disconnects, signals. Tests of those use
a real uvicorn (tests/conftest.py's `live_server`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

from tests.app_loop import close_connections, new_loop

BASE_URL = "http://testserver"


class InProcessApp:
    """An ASGI app whose lifespan has started, in a thread running its event loop until `stop()`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self._state: dict[str, Any] = {}  # the lifespan state, copied into each request as uvicorn does
        self._started = threading.Event()
        self._failure: str | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="in-process-app", daemon=True)

    def start(self, timeout: float = 60) -> InProcessApp:
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the app's lifespan did not start")
        if self._failure is not None:
            self._thread.join(timeout)
            raise RuntimeError(f"the app's lifespan failed: {self._failure}")
        return self

    def stop(self, timeout: float = 30) -> None:
        """Runs the lifespan's shutdown (which waits for the turns it must finish), then ends the loop."""
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the app's lifespan did not shut down")
        if self._failure is not None:
            raise RuntimeError(f"the app's lifespan failed: {self._failure}")

    def transport(self) -> httpx.BaseTransport:
        return _SyncASGITransport(self)

    # --- the loop's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(self._lifespan())

    async def _lifespan(self) -> None:
        """The ASGI lifespan protocol, spoken as a server speaks it."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        started, finished = asyncio.Event(), asyncio.Event()

        async def send(message: Message) -> None:
            if message["type"].endswith(".failed"):
                self._failure = message.get("message") or message["type"]
            (started if message["type"].startswith("lifespan.startup.") else finished).set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        lifespan = asyncio.create_task(self.app(scope, inbox.get, send))
        await inbox.put({"type": "lifespan.startup"})
        if await _first(lifespan, started.wait()) and self._failure is None:
            self._started.set()
            await self._stop.wait()
            await inbox.put({"type": "lifespan.shutdown"})
            await _first(lifespan, finished.wait())
        await asyncio.wait({lifespan}, timeout=10)  # it returns once it has said it finished
        if lifespan.done() and not lifespan.cancelled() and lifespan.exception() is not None:
            self._failure = self._failure or repr(lifespan.exception())
        elif not started.is_set():
            self._failure = self._failure or "the lifespan ended without starting"
        await close_connections()
        self._started.set()  # start() stops waiting if the lifespan ended before it started


async def _first(lifespan: asyncio.Task[None], signal: Coroutine[Any, Any, Any]) -> bool:
    """Waits for the signal or the lifespan's end, whichever comes first; True if the signal came."""
    waiter = asyncio.ensure_future(signal)
    await asyncio.wait({lifespan, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if waiter.done():
        return True
    waiter.cancel()
    return False


class _SyncASGITransport(httpx.BaseTransport):
    """A sync client's request, run by `httpx.ASGITransport` on the app's loop.

    The request body is handed over in the chunks the client made; the response comes back whole,
    once the app has finished it. The client's read timeout bounds the whole exchange.
    """

    def __init__(self, app: InProcessApp) -> None:
        self._app = app
        self._asgi = httpx.ASGITransport(app=_WithState(app.app, lambda: dict(app._state)), client=("127.0.0.1", 50000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        loop = self._app.loop
        if loop is None or loop.is_closed():
            raise httpx.ConnectError("the in-process app is not running", request=request)
        chunks = list(request.stream)  # type: ignore[arg-type]  (a sync client's body is iterable)
        timeout = request.extensions.get("timeout", {}).get("read")
        future = asyncio.run_coroutine_threadsafe(self._exchange(request, chunks), loop)
        try:
            status, headers, body = future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise httpx.ReadTimeout(f"no whole answer within {timeout} s", request=request) from None
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body), request=request)

    async def _exchange(self, request: httpx.Request, chunks: list[bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        inner = httpx.Request(request.method, request.url, headers=request.headers, stream=_Chunks(chunks),
                              extensions=request.extensions)
        response = await self._asgi.handle_async_request(inner)
        body = await response.aread()
        return response.status_code, response.headers.raw, body


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class _WithState:
    """Adds the lifespan state to each request's scope (httpx.ASGITransport leaves it out)."""

    def __init__(self, app: ASGIApp, state: Callable[[], dict[str, Any]]) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app({**scope, "state": self.state()}, receive, send)
