"""A fast fake OpenAI-compatible `/v1/chat/completions` server (uvloop + asyncio Protocol), one process.

It must stay far faster than anything measured through it, so it never decodes the JSON body: it
finds `"stream": true` and the model name by regex. Knobs come from the command line and can be
overridden per request by tokens in the model name, so one fake serves every scenario and every
target forwards the same knobs (they all pass the model name through):

    bench-c200-g5-l0  →  200 content chunks, 5 ms between chunks, 0 ms before the headers

Tokens: `c<N>` chunks, `g<ms>` gap between chunks, `l<ms>` latency before the response. Command-line
only: `--error-rate` (that fraction of requests get a 500), `--vary/--no-vary` (chunk text varies,
so no client sees runs of identical chunks; LiteLLM aborts a stream after 100 identical chunks).

    python -m bench.fake_upstream --port 9100 [--latency-ms 0] [--chunks 8] [--gap-ms 0] [--error-rate 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import signal
import time

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"]{0,200})"')
_KNOB = re.compile(r"(?:^|[-/_])([clg])(\d+(?:\.\d+)?)(?=$|[-_])")
_WORDS = ("alpha ", "bravo ", "charlie ", "delta ", "echo ", "foxtrot ", "golf ", "hotel ", "india ", "juliet ")
ANSWER = "Thanks for asking! We are open Monday to Friday, 9:00 to 17:00 CET, and answer email within a day."


class Knobs:
    __slots__ = ("chunks", "gap", "latency")

    def __init__(self, chunks: int, gap: float, latency: float) -> None:
        self.chunks, self.gap, self.latency = chunks, gap, latency


class Upstream:
    """Shared settings plus caches of prebuilt responses (building them per request would dominate)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.default = Knobs(args.chunks, args.gap_ms / 1000, args.latency_ms / 1000)
        self.error_rate = args.error_rate
        self.vary = args.vary
        self._knobs: dict[bytes, Knobs] = {}
        self._json: dict[bytes, bytes] = {}
        self._chunks: dict[tuple[bytes, int], list[bytes]] = {}
        self.served = 0

    def knobs(self, model: bytes) -> Knobs:
        found = self._knobs.get(model)
        if found is None:
            found = Knobs(self.default.chunks, self.default.gap, self.default.latency)
            for kind, value in _KNOB.findall(model.decode("latin-1")):
                if kind == "c":
                    found.chunks = max(1, int(float(value)))
                elif kind == "g":
                    found.gap = float(value) / 1000
                else:
                    found.latency = float(value) / 1000
            self._knobs[model] = found
        return found

    def completion(self, model: bytes) -> bytes:
        response = self._json.get(model)
        if response is None:
            body = json.dumps({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                "model": model.decode("latin-1"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
            }).encode()
            response = _head(200, b"application/json", len(body)) + body
            self._json[model] = response
        return response

    def stream_events(self, model: bytes, chunks: int) -> list[bytes]:
        """Every HTTP chunk of one stream: headers+first event, content events, then the tail."""
        key = (model, chunks)
        events = self._chunks.get(key)
        if events is None:
            base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model.decode("latin-1")}
            events = []
            for i in range(chunks):
                text = _WORDS[i % len(_WORDS)] if self.vary else "word "
                delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
                events.append(_event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
            tail = _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            tail += _event({**base, "choices": [],
                            "usage": {"prompt_tokens": 50, "completion_tokens": chunks, "total_tokens": 50 + chunks}})
            tail += b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
            events.append(tail)
            self._chunks[key] = events
        return events


def _head(status: int, content_type: bytes, length: int | None) -> bytes:
    reason = b"OK" if status == 200 else b"Internal Server Error"
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s\r\n\r\n" % (status, reason, content_type, framing)


def _event(payload: dict) -> bytes:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


_ERROR_BODY = b'{"error":{"message":"fake upstream error","type":"server_error","param":null,"code":null}}'
_ERROR = _head(500, b"application/json", len(_ERROR_BODY)) + _ERROR_BODY
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
_STREAM_HEAD = _head(200, b"text/event-stream", None)


class Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive; one request at a time per connection (clients here never pipeline)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a delayed or paced answer is still going out
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length, at = 0, head.find(b"content-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15:eol if eol >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        up = self.upstream
        up.served += 1
        if b"/chat/completions" not in head[:head.find(b"\r\n")]:
            self.transport.write(_NOT_FOUND)  # type: ignore[union-attr]
            return
        found = _MODEL.search(body)
        model = found.group(1) if found else b"bench"
        knobs = up.knobs(model)
        stream = _STREAM.search(body) is not None
        if up.error_rate and random.random() < up.error_rate:
            parts = [_ERROR]
        elif stream:
            events = up.stream_events(model, knobs.chunks)
            parts = [_STREAM_HEAD + events[0], *events[1:]]
        else:
            parts = [up.completion(model)]
        if knobs.latency <= 0 and (knobs.gap <= 0 or len(parts) == 1):
            self.transport.write(b"".join(parts))  # type: ignore[union-attr]
            return
        # Paced answers are a chain of timers, not a task per stream: 2,000 slow streams stay cheap.
        self.busy = True
        self.timer = asyncio.get_running_loop().call_later(knobs.latency, self._send, parts, 0, knobs.gap)

    def _send(self, parts: list[bytes], index: int, gap: float) -> None:
        if self.transport is None:
            return
        if gap <= 0:
            self.transport.write(b"".join(parts[index:]))
            index = len(parts)
        else:
            self.transport.write(parts[index])
            index += 1
        if index < len(parts):
            self.timer = asyncio.get_running_loop().call_later(gap, self._send, parts, index, gap)
            return
        self.timer, self.busy = None, False
        self._next()


def raise_open_files_limit() -> None:
    """2,000 concurrent streams need more than the usual 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(args: argparse.Namespace) -> None:
    upstream = Upstream(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), "127.0.0.1", args.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--vary", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    raise_open_files_limit()
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:  # plain asyncio still works, just slower
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
