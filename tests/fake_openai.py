"""A fake OpenAI-compatible chat server on 127.0.0.1, scriptable per request, for tests and benchmarks.

It runs raw asyncio in its own thread and event loop, so sync tests, async tests and separate server
processes can all reach it. Without a script each request gets the echo reply
``"You said: {last user message}. I saw {n} messages."`` (JSON, or SSE when the body says
``"stream": true``), the requested ``model`` echoed back, and usage counted in words.

Scripting: ``fake.enqueue(*behaviours)`` queues one behaviour per coming request; an empty queue
means the echo reply. Behaviours are ``Behaviour`` values, most easily built with:

- ``error(status, message=None)``: that status with an OpenAI-shaped error body (429 adds
  ``Retry-After: 0``).
- ``slow(seconds)``: wait before answering (for client timeouts).
- ``silent_stream(seconds)``: send the SSE headers, then nothing for that long, then the chunks.
- ``drop_mid_stream(after_chunks=2)``: send that many content chunks, then cut the connection.
- ``not_sse(body=...)``: a 200 with a plain, non-SSE body even though a stream was asked for.
- ``reply(text, chunks=None, gap=0.0)``: answer ``text``, streamed as ``chunks`` pieces (default:
  one per word) with ``gap`` seconds between them.

What it saw: ``fake.requests`` (JSON bodies of POST /v1/chat/completions, in order),
``fake.headers`` (their headers, lowercased names, same order) and ``fake.closed_streams``
(``time.monotonic()`` of each client disconnect seen while a response was still pending or
streaming). POST /v1/embeddings answers too (``fake.embedding_requests`` holds its bodies; the same
queue of behaviours applies): each input gets ``embedding_vector(text, dimensions)``, deterministic
and not normalised, ``dimensions`` from the request or 64, as floats or base64 float32 as asked.
``fake.reset()`` forgets all that, clears the queue and cuts requests still being answered: the
``fake_openai`` fixture is one fake per session, reset before each test, so servers shared between
tests can point at it. ``refused_base_url()`` gives a base URL on which nothing listens. Standalone
(for benchmarks): ``python -m tests.fake_openai [PORT]`` prints its base URL and serves until Ctrl-C.
"""

from __future__ import annotations

import array
import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request. The defaults are the echo reply."""

    status: int = 200
    error_message: str | None = None
    text: str | None = None  # None: the echo reply
    chunks: int | None = None  # SSE content chunks; None: one per word
    gap: float = 0.0  # seconds between SSE chunks
    delay: float = 0.0  # seconds before the response headers
    silence: float = 0.0  # seconds between the SSE headers and the first chunk
    drop_after: int | None = None  # cut the connection after this many content chunks
    sse: bool = True  # False: answer a stream request with a plain 200 body


def error(status: int, message: str | None = None) -> Behaviour:
    return Behaviour(status=status, error_message=message or f"fake upstream error {status}")


def slow(seconds: float) -> Behaviour:
    return Behaviour(delay=seconds)


def silent_stream(seconds: float) -> Behaviour:
    return Behaviour(silence=seconds)


def drop_mid_stream(after_chunks: int = 2) -> Behaviour:
    return Behaviour(drop_after=after_chunks)


def not_sse(body: str = "<html><body>502 Bad Gateway</body></html>") -> Behaviour:
    return Behaviour(sse=False, text=body)


def reply(text: str, chunks: int | None = None, gap: float = 0.0) -> Behaviour:
    return Behaviour(text=text, chunks=chunks, gap=gap)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_base_url() -> str:
    """An OpenAI-style base URL where nothing listens (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def echo_text(messages: list[dict[str, Any]]) -> str:
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last_user}. I saw {len(messages)} messages."


def embedding_vector(text: str, dimensions: int = 64) -> list[float]:
    """The fake's embedding of `text`: values in [-1, 1) from SHA-256 of the text, not normalised."""
    digest = b"".join(hashlib.sha256(b"%d:%s" % (block, text.encode())).digest()
                      for block in range(-(-dimensions // 32)))
    return [byte / 128 - 1 for byte in digest[:dimensions]]


def word_count(text: str) -> int:
    return len(text.split())


def split_chunks(text: str, chunks: int | None) -> list[str]:
    """Words with their following whitespace, grouped into `chunks` pieces that join back to `text`."""
    words = re.findall(r"\s*\S+\s*", text) or [text]
    if chunks is None or chunks >= len(words):
        return words
    size, extra = divmod(len(words), chunks)
    pieces, start = [], 0
    for i in range(chunks):
        end = start + size + (1 if i < extra else 0)
        pieces.append("".join(words[start:end]))
        start = end
    return pieces


class _Disconnected(Exception):
    pass


class FakeOpenAI:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.closed_streams: list[float] = []
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most answered at once
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._answering: set[asyncio.Task[None]] = set()  # connections with a request in hand
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self.port = port  # 0: any free port, known once started

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *behaviours: Behaviour) -> None:
        self._queue.extend(behaviours)

    def reset(self) -> None:
        """As good as a new server for the next test, keeping the port and idle keep-alive
        connections: a request still being answered is cut, the queue and what was seen are cleared."""
        assert self._loop is not None, "not started"
        asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(timeout=10)

    def start(self) -> FakeOpenAI:
        self._thread.start()
        if not self._ready.wait(10) or self._startup_error is not None:
            raise RuntimeError("the fake OpenAI server did not start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- server thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to start() instead of dying silently in the thread
            self._startup_error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._connection(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, _Disconnected):
                pass
            except asyncio.CancelledError:
                pass  # shutting down; re-raising would make asyncio log every open connection
            finally:
                connections.discard(task)
                writer.transport.abort()

        server = await asyncio.start_server(on_connect, "127.0.0.1", self.port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        leftover = b""  # a byte the disconnect watcher read from the next request
        while True:
            head = leftover + await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            embeddings = path.rstrip("/").endswith("/embeddings")
            if method != "POST" or not (embeddings or path.rstrip("/").endswith("/chat/completions")):
                self._write_json(writer, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found_error"}})
                await writer.drain()
                continue
            body = json.loads(raw or b"{}")
            if embeddings:
                self.embedding_requests.append(body)
            else:
                self.requests.append(body)
                self.headers.append(headers)
            behaviour = self._queue.popleft() if self._queue else Behaviour()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            task = asyncio.current_task()
            assert task is not None
            self._answering.add(task)
            answered = False

            def done_answering() -> None:
                # Called as soon as the answer is written: the wait for the disconnect watcher
                # that follows yields to the loop, which may already read the client's next
                # request, and that must not count as two answered at once.
                nonlocal answered
                if not answered:
                    answered = True
                    self._answering.discard(task)
                    self.in_flight -= 1

            try:
                leftover = await self._respond(reader, writer, body, behaviour, answered=done_answering, embeddings=embeddings)
            finally:
                done_answering()

    async def _reset(self) -> None:
        cut = list(self._answering)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        self._queue.clear()
        self.requests.clear()
        self.embedding_requests.clear()
        self.headers.clear()
        self.closed_streams.clear()
        self.max_in_flight = self.in_flight

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any], b: Behaviour,
        *, answered: Callable[[], None] = lambda: None, embeddings: bool = False,
    ) -> bytes:
        """Answer one request; returns any bytes of the next request read meanwhile."""
        # While we make the client wait, watch for it hanging up (as a timed-out or closed client does).
        # Instant answers skip the watcher: it costs a task per request, which benchmarks would feel.
        waits = b.delay > 0 or b.silence > 0 or b.gap > 0
        watcher = asyncio.ensure_future(reader.read(1)) if waits else None
        if watcher is not None:  # mark a reset seen here as handled, so asyncio does not log it
            watcher.add_done_callback(lambda w: w.cancelled() or w.exception())
        try:
            await self._pause(watcher, b.delay)
            if b.status != 200:
                self._write_error(writer, b)
            elif embeddings:
                self._write_json(writer, 200, self._embeddings(body))
            elif body.get("stream") and b.sse:
                await self._stream(writer, watcher, body, b)
            elif body.get("stream"):
                self._write_raw(writer, 200, "text/html", (b.text or "").encode())
            else:
                self._write_json(writer, 200, self._completion(body, b))
            await writer.drain()
        except ConnectionError:  # the client hung up while we were still writing
            self.closed_streams.append(time.monotonic())
            raise _Disconnected from None
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        answered()
        if watcher is not None:
            await asyncio.wait({watcher})  # a cancelled read finishes on the next loop turn
        if watcher is None or watcher.cancelled():
            return b""
        if watcher.exception() is not None or watcher.result() == b"":
            raise _Disconnected  # the client closed after the whole answer: nothing more to serve
        return watcher.result()

    async def _pause(self, watcher: asyncio.Future[bytes] | None, seconds: float) -> None:
        if seconds <= 0 or watcher is None:
            return
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        if done and (watcher.exception() is not None or watcher.result() == b""):
            self.closed_streams.append(time.monotonic())
            raise _Disconnected

    async def _stream(
        self, writer: asyncio.StreamWriter, watcher: asyncio.Future[bytes] | None, body: dict[str, Any], b: Behaviour
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await self._pause(watcher, b.silence)
        text, model = self._text(body, b), body.get("model", "")
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        for i, piece in enumerate(split_chunks(text, b.chunks)):
            if b.drop_after is not None and i >= b.drop_after:
                break
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            self._event(writer, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            await writer.drain()
            await self._pause(watcher, b.gap)
        if b.drop_after is not None:
            await asyncio.sleep(0.05)  # let the sent chunks arrive before the cut
            writer.transport.abort()
            raise _Disconnected
        self._event(writer, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(writer, {**base, "choices": [], "usage": self._usage(body, text)})
        # [DONE] and the end of the chunked body in one write: a client that stops reading at [DONE]
        # then finds the body ended, as with a real provider, and may pool the connection.
        done = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))

    # --- response bodies -----------------------------------------------------------------------

    @staticmethod
    def _text(body: dict[str, Any], b: Behaviour) -> str:
        return b.text if b.text is not None else echo_text(body.get("messages", []))

    @staticmethod
    def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = sum(word_count(str(m.get("content", ""))) for m in body.get("messages", []))
        completion = word_count(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
        text = self._text(body, b)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": self._usage(body, text),
        }

    @staticmethod
    def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
        texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
        dimensions = body.get("dimensions") or 64
        data = []
        for i, text in enumerate(texts):
            vector = embedding_vector(str(text), dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(array.array("f", vector).tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(word_count(str(text)) for text in texts)
        return {"object": "list", "data": data, "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _write_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        payload = {"error": {"message": b.error_message, "type": _ERROR_TYPES.get(b.status, "server_error"),
                             "param": None, "code": None}}
        extra = {"retry-after": "0"} if b.status == 429 else {}
        self._write_raw(writer, b.status, "application/json", json.dumps(payload).encode(), extra)

    def _write_json(self, writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
        self._write_raw(writer, status, "application/json", json.dumps(payload).encode())

    @staticmethod
    def _write_raw(
        writer: asyncio.StreamWriter, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        head += f"content-length: {len(data)}\r\n\r\n"
        writer.write(head.encode() + data)

    def _event(self, writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
        self._chunk(writer, b"data: " + json.dumps(payload).encode() + b"\n\n")

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))


@pytest.fixture(scope="session")
def shared_fake_openai() -> Iterator[FakeOpenAI]:
    """One fake for the session, so servers shared between tests can point at it."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(shared_fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The session's fake, reset: nothing queued, nothing seen, nothing still being answered."""
    shared_fake_openai.reset()
    return shared_fake_openai


if __name__ == "__main__":  # for benchmarks: python -m tests.fake_openai [PORT]
    import sys

    with FakeOpenAI(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
