"""A lean HTTP/1.1 keep-alive client connection (asyncio Protocol + httptools) that times SSE events.

A general client (httpx, aiohttp) would cost more CPU per request than some targets do; this one
writes prebuilt request bytes and only notes the arrival time of each event that carries text.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

# Text-bearing events: OpenAI chunks ("content":"x") and Chatspark deltas ("delta":"x"), not empty ones.
_TEXT_EVENT = re.compile(rb'"(?:content|delta)"\s*:\s*"[^"]')


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, body: dict[str, Any]) -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return head.encode() + b"content-length: %d\r\n\r\n" % len(data) + data


@dataclass
class Reply:
    status: int = 0
    started: float = 0.0  # perf_counter when the request was written (or scheduled, for open loop)
    finished: float = 0.0
    text_times: list[float] = field(default_factory=list)  # arrival of each text-bearing event
    body: bytes = b""

    @property
    def latency(self) -> float:
        return self.finished - self.started

    @property
    def ttft(self) -> float | None:
        return self.text_times[0] - self.started if self.text_times else None

    def gaps(self) -> list[float]:
        t = self.text_times
        return [b - a for a, b in zip(t, t[1:])]


class Connection(asyncio.Protocol):
    def __init__(self, keep_body: bool) -> None:
        self.keep_body = keep_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reply: Reply | None = None
        self.done: asyncio.Future[Reply] | None = None
        self.first_text: asyncio.Future[None] | None = None  # set at the first text-bearing event
        self.pending = b""  # an SSE event split across reads
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, host: str, port: int, keep_body: bool = False) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(lambda: cls(keep_body), host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("server closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        assert self.reply is not None
        self.reply.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        reply = self.reply
        assert reply is not None
        if self.keep_body:
            reply.body += body
        data = self.pending + body
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.pending = data
            return
        self.pending = data[cut + 2:]
        hits = len(_TEXT_EVENT.findall(data, 0, cut))
        if hits:
            now = time.perf_counter()
            reply.text_times.extend([now] * hits)  # events that arrived in one read share its time
            if self.first_text is not None and not self.first_text.done():
                self.first_text.set_result(None)

    def on_message_complete(self) -> None:
        reply, done = self.reply, self.done
        assert reply is not None and done is not None
        reply.finished = time.perf_counter()
        self.pending = b""
        if not done.done():
            done.set_result(reply)

    def start(self, raw: bytes, started: float | None = None) -> asyncio.Future[Reply]:
        """Writes the request; the future resolves with the whole reply (`first_text` at its first text)."""
        if self.transport is None:
            raise ConnectionError("connection is closed")
        loop = asyncio.get_running_loop()
        self.reply = Reply(started=time.perf_counter() if started is None else started)
        self.done, self.first_text = loop.create_future(), loop.create_future()
        self.transport.write(raw)
        return self.done

    async def send(self, raw: bytes, started: float | None = None) -> Reply:
        return await self.start(raw, started)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
