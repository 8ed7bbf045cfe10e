"""Chatspark behind the exact deploy/nginx.conf: nginx (Debian's) in front of 3 `chatspark serve`
replicas on one Redis (tests/gateway/conftest.py). Everything a client does here goes through nginx."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.fake_openai import Behaviour, reply
from tests.gateway.conftest import ADDRESS_RATE, LEASE_SECONDS, PING_SECONDS, Gateway

AGENTS = "/api/v1/agents"
WORDS = [f"w{i}" for i in range(12)]


@dataclass
class Event:
    at: float  # seconds since the request was sent
    id: int | None
    data: str  # the JSON text, or "[DONE]"

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.data)  # type: ignore[no-any-return]


@dataclass
class Read:
    status: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    complete: bool = False  # the body ended cleanly (not cut)

    @property
    def text(self) -> str:
        return "".join(e.json.get("delta", "") for e in self.events if e.data != "[DONE]")

    @property
    def ids(self) -> list[int | None]:
        return [e.id for e in self.events]

    def terminal(self) -> dict[str, Any]:
        last = [e.json for e in self.events if e.data != "[DONE]"][-1]
        assert last.get("done") or last.get("error"), last
        return last


def read_stream(http: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None,
                stop_after: int | None = None) -> Read:
    """POSTs a stream and reads it line by line as it arrives; `stop_after` events, then hangs up."""
    started = time.monotonic()
    with http.stream("POST", path, json={"stream": True, **body}, headers=headers or {}) as response:
        read = Read(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            read.events.append(Event(0, None, response.text))
            return read
        event_id: int | None = None
        try:
            for line in response.iter_lines():
                now = time.monotonic() - started
                if line.startswith(": ping"):
                    read.pings.append(now)
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    read.events.append(Event(now, event_id, line[6:]))
                    if stop_after is not None and len(read.events) >= stop_after:
                        return read  # leaving the block closes the connection mid-stream
            read.complete = True
        except httpx.HTTPError:
            pass  # cut: complete stays False
    return read


def test_nginx_passes_each_token_as_it_is_written_and_the_pings(gw: Gateway, fake_openai: Any) -> None:
    # Silent 1 s before the first token (>= 3 pings at 0.2 s), then a token every 0.15 s.
    fake_openai.enqueue(Behaviour(text=" ".join(WORDS), chunks=len(WORDS), gap=0.15, silence=1.0))
    with gw.client(gw.key()) as http:
        read = read_stream(http, f"{AGENTS}/2/chat", {"message": "hello"})
    assert read.status == 200 and read.complete
    assert read.headers["content-type"].startswith("text/event-stream")
    deltas = [e for e in read.events if e.data != "[DONE]" and e.json.get("delta")]
    assert len(deltas) == len(WORDS)  # one event per token, none merged
    assert read.text.split() == WORDS
    # Pings went through while the model was silent, at the configured interval (3x slack).
    before = [p for p in read.pings if p < deltas[0].at]
    assert len(before) >= 3
    assert max(b - a for a, b in zip(before, before[1:])) < 3 * PING_SECONDS
    # Unbuffered: the first token arrived ~1.65 s before the last, and the tokens one by one.
    assert deltas[-1].at - deltas[0].at > 1.0
    gaps = [b.at - a.at for a, b in zip(deltas, deltas[1:])]
    assert sum(1 for g in gaps if g > 0.05) >= len(gaps) - 2
