"""Mixed concurrent chat load against a service, and the ledger of what it acknowledged.

Every worker sends turns (JSON or SSE; new conversations, its own ones, and a few shared with other
workers, which meet 409 CONVERSATION_BUSY and retry after Retry-After; some with an Idempotency-Key,
retried with the same key after a retryable failure or a deliberate disconnect). Every outcome is
classified: an acknowledged turn (a 200 JSON body, or a `done` event) goes to the ledger; a clean
error (enveloped, or one in-stream error event, then `[DONE]`) is counted by status and code;
anything else (500 INTERNAL_ERROR, a body outside the envelope, a stream ending silently, a
dropped connection, a hang) is a problem the test fails on.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.harness import (
    AGENT_DIRECT,
    AGENT_FALLBACK,
    AGENT_LITELLM,
    AGENT_REFUSED,
    AGENT_REFUSED_FIRST,
    CLEAN,
    LONG,
    LONG_ANSWER,
)

REQUEST_DEADLINE = 30.0  # seconds; a request still unanswered by then is a hang
CLEAN_5XX = {(502, "UPSTREAM_ERROR"), (503, "SERVICE_UNAVAILABLE"), (504, "UPSTREAM_TIMEOUT")}
CLEAN_STREAM_CAUSES = {"UPSTREAM_ERROR", "SERVICE_UNAVAILABLE", "UPSTREAM_TIMEOUT"}

# Agents a worker talks to, with weights.
DEFAULT_AGENTS = {AGENT_LITELLM: 3, AGENT_FALLBACK: 2, AGENT_DIRECT: 4, AGENT_REFUSED_FIRST: 2, AGENT_REFUSED: 1}


@dataclass
class Ack:
    message_id: str
    conversation_id: str
    agent: int
    message: str
    started: float  # when the turn was first sent (its first attempt under one Idempotency-Key)
    acked: float  # when the acknowledgement arrived
    model: str
    stream: bool


@dataclass
class Ledger:
    """Everything the load saw."""

    acks: dict[str, Ack] = field(default_factory=dict)  # by message id
    sent: set[str] = field(default_factory=set)  # every message text sent
    requests: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    errors_5xx: collections.Counter[str] = field(default_factory=collections.Counter)  # "503 SERVICE_UNAVAILABLE", "stream 502 UPSTREAM_ERROR"
    busy: int = 0
    replays: int = 0
    problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # of clean-agent acknowledged turns
    events: list[tuple[float, str]] = field(default_factory=list)  # (time, outcome) of every attempt
    disconnects: int = 0
    by_agent: collections.Counter[int] = field(default_factory=collections.Counter)  # attempts per agent

    def ack(self, ack: Ack) -> None:
        known = self.acks.get(ack.message_id)
        if known is not None and (known.conversation_id, known.message) != (ack.conversation_id, ack.message):
            self.problems.append(f"message id {ack.message_id} acknowledged for two different turns")
        if known is None:
            self.acks[ack.message_id] = ack

    def problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)

    def outcome(self, label: str) -> None:
        self.events.append((time.monotonic(), label))
        self.statuses[label] += 1

    def merge_5xx(self) -> dict[str, int]:
        return dict(sorted(self.errors_5xx.items()))


class Retry(Exception):
    """A clean, retryable failure of one attempt: the conversation was busy, the store was down, or
    the upstream failed (after the service's own retries and fallbacks)."""

    def __init__(self, kind: str, after: float = 0.0) -> None:
        super().__init__(kind, after)
        self.kind = kind
        self.after = after


class Final(Exception):
    """A clean failure not worth retrying (or a turn that will not be retried)."""


@dataclass
class LoadProfile:
    workers: int = 12
    agents: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_AGENTS))
    stream_share: float = 0.5
    idempotent_share: float = 0.35
    new_share: float = 0.3  # the rest continue a conversation
    shared_share: float = 0.25  # of continued turns: a conversation shared by all workers
    disconnect_share: float = 0.1  # of idempotent streams: leave after the first delta, then retry
    clean: bool = False  # mark every message [clean] (no upstream faults)
    think: float = 0.0  # seconds between a worker's turns


class Load:
    def __init__(self, base_url: str, key: str, ledger: Ledger, profile: LoadProfile, seed: int = 1) -> None:
        self.base_url = base_url
        self.key = key
        self.ledger = ledger
        self.profile = profile
        self.random = random.Random(seed)
        self.shared: dict[int, list[str]] = collections.defaultdict(list)  # agent -> shared conversations
        self.own: dict[tuple[int, int], list[str]] = collections.defaultdict(list)  # (worker, agent) -> cids
        self.stop_at = 0.0
        self._sequence = 0

    async def run(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        self.stop_at = time.monotonic() + seconds
        stop = stop or asyncio.Event()
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        timeout = httpx.Timeout(REQUEST_DEADLINE, connect=5)
        clients = [httpx.AsyncClient(base_url=self.base_url, headers={"authorization": f"Bearer {self.key}"},
                                     timeout=timeout, limits=limits) for _ in range(self.profile.workers)]
        try:
            await asyncio.gather(*(self._worker(n, clients[n], stop) for n in range(self.profile.workers)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    def _message(self, worker: int) -> str:
        self._sequence += 1
        text = f"w{worker} n{self._sequence} {uuid.uuid4().hex[:8]}"
        return f"{text} {CLEAN}" if self.profile.clean else text

    def _agent(self) -> int:
        agents, weights = zip(*self.profile.agents.items())
        return self.random.choices(agents, weights)[0]

    async def _worker(self, worker: int, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        p = self.profile
        while time.monotonic() < self.stop_at and not stop.is_set():
            agent = self._agent()
            roll = self.random.random()
            cid = None
            if roll >= p.new_share:
                pool = self.shared[agent] if self.random.random() < p.shared_share else self.own[(worker, agent)]
                cid = self.random.choice(pool) if pool else None
            stream = self.random.random() < p.stream_share
            key = uuid.uuid4().hex if self.random.random() < p.idempotent_share else None
            leave = key is not None and stream and self.random.random() < p.disconnect_share
            message = self._message(worker)
            ack = await self.turn(http, agent, message, cid, stream=stream, key=key, leave_first=leave)
            if ack is not None and cid is None:
                pool = self.shared[agent] if len(self.shared[agent]) < 3 else self.own[(worker, agent)]
                pool.append(ack.conversation_id)
            if p.think:
                await asyncio.sleep(p.think)

    async def turn(self, http: httpx.AsyncClient, agent: int, message: str, cid: str | None, *, stream: bool,
                   key: str | None, leave_first: bool = False) -> Ack | None:
        """One turn, with the retries a careful client makes; its Ack if it was acknowledged."""
        self.ledger.sent.add(message)
        body: dict[str, Any] = {"message": message, "stream": stream}
        if cid is not None:
            body["conversationId"] = cid
        headers = {"idempotency-key": key} if key else {}
        first_sent = time.monotonic()
        upstream_failures = 0
        for attempt in range(60):
            sent = time.monotonic()
            started = first_sent if key else sent
            try:
                if stream:
                    ack = await asyncio.wait_for(
                        self._stream(http, agent, body, headers, leave_first and attempt == 0), REQUEST_DEADLINE + 5
                    )
                else:
                    ack = await asyncio.wait_for(self._json(http, agent, body, headers), REQUEST_DEADLINE + 5)
            except Retry as retry:
                # A careful client: busy and store-down are retried for a while; an upstream failure
                # a few times, and only under an Idempotency-Key (else it would be another turn).
                upstream_failures += retry.kind == "upstream"
                if retry.kind == "upstream" and (not key or upstream_failures >= 3):
                    return None
                if time.monotonic() > self.stop_at + 10:
                    return None
                await asyncio.sleep(retry.after or 0.2 + self.random.random() * 0.3)
                continue
            except Final:
                return None
            except (TimeoutError, httpx.TimeoutException):
                self.ledger.outcome("hang")
                self.ledger.problem(f"no answer within {REQUEST_DEADLINE:g} s: agent {agent} stream={stream} key={key}")
                return None
            except httpx.TransportError as exc:
                self.ledger.outcome("transport error")
                self.ledger.problem(f"the service dropped a connection ({type(exc).__name__}: {exc}); agent {agent}")
                return None
            if ack is None:  # the deliberate disconnect: retry with the same key
                continue
            result = Ack(
                message_id=ack["messageId"], conversation_id=ack["conversationId"], agent=agent, message=message,
                started=started, acked=time.monotonic(), model=ack["model"], stream=stream,
            )
            if cid is not None and result.conversation_id != cid:
                self.ledger.problem(f"a turn of {cid} was acknowledged for {result.conversation_id}")
            self.ledger.ack(result)
            if CLEAN in message:
                self.ledger.latencies.append(result.acked - sent)
            return result
        self.ledger.problem(f"gave up after 60 attempts: agent {agent} {body}")
        return None

    async def _json(self, http: httpx.AsyncClient, agent: int, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        self.ledger.requests += 1
        self.ledger.by_agent[agent] += 1
        response = await http.post(f"/api/v1/agents/{agent}/chat", json=body, headers=headers)
        if response.status_code == 200:
            payload = response.json()
            self.ledger.outcome("200")
            if response.headers.get("idempotent-replayed") == "true":
                self.ledger.replays += 1
            for name in ("messageId", "conversationId", "text", "model"):
                if not payload.get(name):
                    self.ledger.problem(f"a 200 without {name}: {payload}")
                    raise Final
            return payload
        self._error(response.status_code, response.content, response.headers, agent)
        raise AssertionError("unreachable")

    def _error(self, status: int, content: bytes, headers: httpx.Headers, agent: int) -> None:
        """Classifies an error answer; raises Retry or Final."""
        try:
            error = json.loads(content)["error"]
            code = error["code"]
            assert isinstance(error["message"], str)
        except (ValueError, KeyError, TypeError, AssertionError):
            self.ledger.outcome(f"{status} not enveloped")
            self.ledger.problem(f"{status} outside the error envelope: {content[:300]!r}")
            raise Final from None
        self.ledger.outcome(f"{status} {code}")
        if status >= 500:
            self.ledger.errors_5xx[f"{status} {code}"] += 1
            if (status, code) not in CLEAN_5XX:
                self.ledger.problem(f"{status} {code} on agent {agent}: {error['message']}")
                raise Final
            if error.get("retryable") is not True:
                self.ledger.problem(f"{status} {code} not marked retryable")
            raise Retry("store" if status == 503 else "upstream")
        if status == 409 and code == "CONVERSATION_BUSY":
            self.ledger.busy += 1
            raise Retry("busy", after=float(headers.get("retry-after", "1")))
        self.ledger.problem(f"unexpected {status} {code} on agent {agent}: {error['message']}")
        raise Final

    async def _stream(self, http: httpx.AsyncClient, agent: int, body: dict[str, Any], headers: dict[str, str],
                      leave: bool) -> dict[str, Any] | None:
        self.ledger.requests += 1
        self.ledger.by_agent[agent] += 1
        async with http.stream("POST", f"/api/v1/agents/{agent}/chat", json=body, headers=headers) as response:
            if response.status_code != 200:
                self._error(response.status_code, await response.aread(), response.headers, agent)
            terminal: dict[str, Any] | None = None
            finished = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if finished:
                    self.ledger.problem(f"data after [DONE]: {data[:100]}")
                if data == "[DONE]":
                    finished = True  # read on to the end of the response, as a client would
                    continue
                event = json.loads(data)
                if terminal is not None:
                    self.ledger.problem(f"an event after the terminal one: {event}")
                if event.get("done") or "error" in event:
                    terminal = event
                elif leave:
                    self.ledger.disconnects += 1
                    self.ledger.outcome("left on purpose")
                    return None  # leaving the block closes the connection
            if not finished or terminal is None:
                self.ledger.outcome("stream without terminal event")
                self.ledger.problem(f"a stream ended without {'[DONE]' if not finished else 'done or error'}; agent {agent}")
                raise Final
        if terminal.get("done"):
            self.ledger.outcome("stream done")
            if response.headers.get("idempotent-replayed") == "true":
                self.ledger.replays += 1
            return terminal
        error = terminal["error"]
        cause = (error.get("details") or {}).get("cause", "none")
        self.ledger.outcome(f"stream {cause}")
        self.ledger.errors_5xx[f"stream {cause}"] += 1
        if error.get("code") != "STREAMING_ERROR" or cause not in CLEAN_STREAM_CAUSES:
            self.ledger.problem(f"in-stream error {error} on agent {agent}")
            raise Final
        if not error.get("retryable"):
            self.ledger.problem(f"in-stream {cause} not retryable")
        raise Retry("store" if cause == "SERVICE_UNAVAILABLE" else "upstream")


# --- slow readers ------------------------------------------------------------------------------


class SlowReader:
    """A raw socket with a tiny receive buffer that asks for a long streamed answer and then reads a
    few bytes every 100 ms (trickle_all), so the server's writes to it back up."""

    receive_buffer: int | None = 1024  # None: the kernel's default (autotuned)
    read_bytes = 16  # at most, per read
    hold: float | None = None  # seconds before it leaves its answer and asks again; None: never

    def __init__(self, port: int, key: str, agent: int = AGENT_DIRECT) -> None:
        self.address = ("127.0.0.1", port)
        body = json.dumps({"message": f"{LONG} {uuid.uuid4().hex[:8]}", "stream": True}).encode()
        self.request = (
            f"POST /api/v1/agents/{agent}/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )
        self.received = 0
        self.head = b""  # the start of the first answer
        self.error: str | None = None
        self.sock = self._ask()

    def _ask(self) -> socket.socket:
        sock = socket.socket()
        if self.receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.settimeout(5)
        sock.connect(self.address)
        sock.sendall(self.request)
        sock.setblocking(False)  # a reader with nothing to read yet must not hold up the others
        self.asked = time.monotonic()
        return sock

    def trickle(self) -> None:
        try:
            if self.hold is not None and time.monotonic() - self.asked > self.hold:
                self.sock.close()
                self.sock = self._ask()
            chunk = self.sock.recv(self.read_bytes)
        except BlockingIOError:  # nothing arrived yet
            return
        except OSError as exc:
            self.error = str(exc)
            return
        if not chunk:
            self.error = self.error or "closed by the server"
        if len(self.head) < 64:
            self.head += chunk
        self.received += len(chunk)

    def close(self) -> None:
        self.sock.close()


class FastReader(SlowReader):
    """The control for SlowReader: the same long answers, all there is read every 100 ms (the
    service's writes never back up); each left after 3 s, before it ends (so nothing is stored), for
    another."""

    receive_buffer = None
    read_bytes = 1 << 20
    hold = 3.0


async def trickle_all(readers: list[SlowReader], stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.to_thread(lambda: [r.trickle() for r in readers if r.error is None])
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


# --- reading it all back -----------------------------------------------------------------------


@dataclass
class Verdict:
    acknowledged: int
    lost: list[str]
    duplicated: list[str]
    misordered: list[str]
    unacknowledged_stored: int  # turns stored whose answer never reached the client (outages)
    foreign: list[str]  # stored user messages nobody sent
    conversations: int


def read_back(base_url: str, key: str, ledger: Ledger) -> Verdict:
    """Reads every conversation with an acknowledged turn through the messages API (paginated) and
    checks each acknowledged turn is there exactly once, in an order consistent with real time."""
    by_conversation: dict[tuple[int, str], list[Ack]] = collections.defaultdict(list)
    for ack in ledger.acks.values():
        by_conversation[(ack.agent, ack.conversation_id)].append(ack)
    lost, duplicated, misordered, foreign = [], [], [], []
    unacknowledged = 0
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        for (agent, cid), acks in by_conversation.items():
            rows = _messages(http, agent, cid)
            if rows is None:
                lost.extend(a.message_id for a in acks)
                continue
            positions: dict[str, list[int]] = collections.defaultdict(list)
            user_before: dict[str, str] = {}
            for i, row in enumerate(rows):
                if row["role"] == "assistant":
                    positions[row["id"]].append(i)
                    user_before[row["id"]] = rows[i - 1]["content"] if i and rows[i - 1]["role"] == "user" else ""
                elif row["content"] not in ledger.sent:
                    foreign.append(row["content"][:80])
            acked_ids = {a.message_id for a in acks}
            unacknowledged += sum(1 for mid in positions if mid not in acked_ids)
            for a in acks:
                found = positions.get(a.message_id, [])
                if not found:
                    lost.append(a.message_id)
                elif len(found) > 1:
                    duplicated.append(a.message_id)
                elif user_before[a.message_id] != a.message:
                    misordered.append(f"{a.message_id}: stored after {user_before[a.message_id]!r}, sent {a.message!r}")
            # Real-time order: a turn acknowledged before another was first sent is stored before it.
            present = sorted((a for a in acks if positions.get(a.message_id)), key=lambda a: positions[a.message_id][0])
            for i, first in enumerate(present):
                for second in present[i + 1:]:
                    if second.acked < first.started:
                        misordered.append(f"{cid}: {second.message_id} was acknowledged before {first.message_id} "
                                          "was sent, yet is stored after it")
    return Verdict(
        acknowledged=len(ledger.acks), lost=lost, duplicated=duplicated, misordered=misordered,
        unacknowledged_stored=unacknowledged, foreign=foreign, conversations=len(by_conversation),
    )


def _messages(http: httpx.Client, agent: int, cid: str) -> list[dict[str, Any]] | None:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        response = http.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages", params=params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        page = response.json()
        rows.extend(page["messages"])
        cursor = page["nextCursor"]
        if not cursor:
            return rows
    raise AssertionError("a conversation with more than 100,000 messages?")


def store_integrity(raw: Any, prefix: str, max_turns: int = 1000) -> list[str]:
    """Problems with what Redis holds: every conversation whole (meta fields, counters matching the
    list), every stored answer complete (the fake's echo, not a torn stream)."""
    problems = []
    for meta_key in raw.scan_iter(match=f"{prefix}:conv:{{*}}", count=1000):
        name = meta_key.decode()
        if not name.endswith("}"):
            continue
        meta = raw.hgetall(meta_key)
        missing = [f for f in (b"agent", b"created", b"updated", b"turns", b"ttl") if f not in meta]
        if missing:
            problems.append(f"{name}: meta lacks {missing}")
            continue
        turns = raw.lrange(f"{name}:turns", 0, -1)
        if len(turns) != min(int(meta[b"turns"]), max_turns):
            problems.append(f"{name}: {len(turns)} turns stored, counter says {int(meta[b'turns'])}")
        for raw_turn in turns:
            turn = json.loads(raw_turn)
            query, response = turn.get("query", ""), turn.get("response", "")
            if not turn.get("id") or not turn.get("user_id") or not query:
                problems.append(f"{name}: a torn turn {turn}")
            elif LONG in query:
                if response != LONG_ANSWER:
                    problems.append(f"{name}: an incomplete long answer ({len(response)} of {len(LONG_ANSWER)} characters)")
            elif not (response.startswith(f"You said: {query}. I saw ") and response.endswith(" messages.")):
                problems.append(f"{name}: an incomplete answer {response[-80:]!r} to {query!r}")
    return problems


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
