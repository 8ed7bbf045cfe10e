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

# One worker runs the whole module (`make test` distributes with --dist loadgroup): one nginx and
# 3 replicas, not one set per pytest worker.
pytestmark = pytest.mark.xdist_group("gateway")

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


def replicas_of(gw: Gateway, response: httpx.Response | Read) -> list[str]:
    """The replica addresses nginx tried for this answer (the last one answered)."""
    return gw.nginx.upstreams(response.headers["x-request-id"])


def test_a_conversation_continues_across_replicas(gw: Gateway, fake_openai: Any) -> None:
    answered_by = []
    with gw.client(gw.key()) as http:
        first = http.post(f"{AGENTS}/2/chat", json={"message": "turn 0"})
        assert first.status_code == 200, first.text
        cid = first.json()["conversationId"]
        answered_by.append(replicas_of(gw, first)[-1])
        for turn in range(1, 6):
            # A new connection each time, as separate page loads would open.
            with gw.client(http.headers["authorization"][7:]) as fresh:
                answer = fresh.post(f"{AGENTS}/2/chat", json={"message": f"turn {turn}", "conversationId": cid})
            assert answer.status_code == 200, answer.text
            answered_by.append(replicas_of(gw, answer)[-1])
        messages = http.get(f"{AGENTS}/2/conversations/{cid}/messages", params={"limit": 100}).json()["messages"]
    assert len(set(answered_by)) >= 2, answered_by
    assert [m["content"] for m in messages if m["role"] == "user"] == [f"turn {t}" for t in range(6)]
    # Each replica sent the model the history the others stored.
    last_prompt = [m["content"] for m in fake_openai.requests[-1]["messages"] if m["role"] == "user"]
    assert last_prompt == [f"turn {t}" for t in range(6)]


def test_rate_limits_stay_exact_through_nginx(gw: Gateway) -> None:
    key = gw.key(rate_limit=10)
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with gw.client(key) as http:
            status = http.get(AGENTS).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(statuses) == {200: 10, 429: 6}


def _from(address: str, base_url: str, **options: Any) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x address is this machine's)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=30, **options)


def test_limits_by_client_address_count_the_address_nginx_saw_and_only_from_nginx(gw: Gateway) -> None:
    origin = "https://shop.example"
    with gw.client(gw.key()) as admin:
        created = admin.post(AGENTS, json={"name": "Gateway shop", "allowedOrigins": [origin]})
        assert created.status_code == 201, created.text
        agent = created.json()["agent"]["id"]
    time.sleep(1.2)  # every replica's agent cache (1 s) sees it
    path = f"/api/v1/widget/{agent}/session"
    headers = {"origin": origin}
    # Addresses of this run only (the limit's window is a minute; other runs use other prefixes anyway).
    a, b, c = (f"127.{secrets.randbelow(200) + 10}.{secrets.randbelow(250)}.{n}" for n in (2, 3, 4))

    with _from(a, gw.nginx.base_url) as browser_a:
        spent = [browser_a.post(path, json={}, headers=headers).status_code for _ in range(ADDRESS_RATE)]
        assert spent == [200] * ADDRESS_RATE
        assert browser_a.post(path, json={}, headers=headers).status_code == 429
        # A client-sent X-Forwarded-For stays left of the address nginx appends: still `a`.
        spoofed = browser_a.post(path, json={}, headers={**headers, "x-forwarded-for": "203.0.113.9"})
        assert spoofed.status_code == 429
    with _from(b, gw.nginx.base_url) as browser_b:
        # Another browser behind the same nginx has its own budget (not nginx's 127.0.0.1).
        assert browser_b.post(path, json={}, headers=headers).status_code == 200
    # Straight to a replica (a peer it does not trust), X-Forwarded-For is ignored: counted as `a`.
    with _from(a, gw.replicas[0].base_url) as direct:
        assert direct.post(path, json={}, headers={**headers, "x-forwarded-for": c}).status_code == 429


def test_an_idempotent_retry_served_by_another_replica_replays(gw: Gateway, fake_openai: Any) -> None:
    body = {"message": "once"}
    headers = {"idempotency-key": f"gw-{secrets.token_hex(6)}"}
    with gw.client(gw.key()) as http:
        first = http.post(f"{AGENTS}/2/chat", json=body, headers=headers)
        assert first.status_code == 200, first.text
        runner = replicas_of(gw, first)[-1]
        replays = []
        for _ in range(9):  # round robin over 3 replicas (per nginx worker): another one comes soon
            with gw.client(http.headers["authorization"][7:]) as fresh:
                again = fresh.post(f"{AGENTS}/2/chat", json=body, headers=headers)
            replays.append((replicas_of(gw, again)[-1], again))
            if replays[-1][0] != runner:
                break
    other, replay = replays[-1]
    assert other != runner, "nginx never sent the retry to another replica"
    assert all(r.status_code == 200 and r.headers["idempotent-replayed"] == "true" for _, r in replays)
    assert all(r.content == first.content for _, r in replays)
    assert len(fake_openai.requests) == 1  # one model call in all


def test_a_dropped_stream_resumes_through_nginx_on_any_replica_receiving_the_rest_once(gw: Gateway, fake_openai: Any) -> None:
    words = [f"r{i}" for i in range(40)]
    fake_openai.enqueue(reply(" ".join(words), chunks=len(words), gap=0.1))  # ~4 s
    body = {"message": "resume me"}
    headers = {"idempotency-key": f"gw-{secrets.token_hex(6)}"}
    with gw.client(gw.key()) as http:
        parts = [read_stream(http, f"{AGENTS}/2/chat", body, headers, stop_after=3)]
        runner = gw.replica_with_model_key(fake_openai.headers[0]["authorization"]).address
        served = [replicas_of(gw, parts[0])[-1]]
        # Hang up after two events, resume, until a replica other than the runner served a resume
        # while the turn still ran; then read to the end.
        while True:
            last = parts[-1].events[-1].id
            assert last is not None
            done = served[-1] != runner or len(parts) > 12
            resumed = read_stream(http, f"{AGENTS}/2/chat", body, {**headers, "last-event-id": str(last)},
                                  stop_after=None if done else 2)
            assert resumed.status == 200
            parts.append(resumed)
            served.append(replicas_of(gw, resumed)[-1])
            if done:
                break
    assert any(address != runner for address in served[1:-1]), served
    assert parts[-1].complete
    events = [e for part in parts for e in part.events]
    assert [e.id for e in events] == list(range(1, len(events) + 1))  # each event once, in order
    assert "".join(e.json.get("delta", "") for e in events if e.data != "[DONE]").split() == words
    assert sum(1 for e in events if e.data != "[DONE]" and e.json.get("done")) == 1
    assert events[-1].data == "[DONE]"
    assert len(fake_openai.requests) == 1


def test_a_runner_killed_mid_stream_ends_it_retryably_and_the_retry_runs_once_more_and_stores_once(
    gw: Gateway, fake_openai: Any
) -> None:
    words = [f"k{i}" for i in range(30)]
    with gw.client(gw.key()) as http:
        first = http.post(f"{AGENTS}/2/chat", json={"message": "before"})
        assert first.status_code == 200
        cid = first.json()["conversationId"]
        fake_openai.enqueue(reply(" ".join(words), chunks=len(words), gap=0.1), reply(" ".join(words)))
        body = {"message": "killed", "conversationId": cid}
        headers = {"idempotency-key": f"gw-{secrets.token_hex(6)}"}
        calls = len(fake_openai.requests)
        with http.stream("POST", f"{AGENTS}/2/chat", json={"stream": True, **body}, headers=headers) as response:
            lines = response.iter_lines()
            seen = [line for line, _ in zip((li for li in lines if li.startswith("id: ")), range(3))]
            runner = gw.replica_with_model_key(fake_openai.headers[calls]["authorization"])
            runner.signal(signal.SIGKILL)
            runner.wait_exit()
            rest: list[str] = []
            with pytest.raises(httpx.HTTPError):  # nginx cuts the client's stream: no [DONE]
                rest.extend(lines)
        assert not any(line == "data: [DONE]" for line in rest)
        last = int(seen[-1][4:])
        # Resumed on a live replica: it follows the journal until the dead runner's lease lapses.
        started = time.monotonic()
        resumed = read_stream(http, f"{AGENTS}/2/chat", body, {**headers, "last-event-id": str(last)})
        assert time.monotonic() - started < 3 * LEASE_SECONDS + 2
        assert resumed.status == 200 and resumed.complete
        error = resumed.terminal()["error"]
        assert error["retryable"] is True
        assert error["details"]["cause"] == "SERVICE_UNAVAILABLE"
        assert resumed.events[-1].data == "[DONE]"
        # The retry with the same key runs the turn once more, and it is stored once.
        retried = read_stream(http, f"{AGENTS}/2/chat", body, headers)
        assert retried.status == 200 and retried.complete, retried.events
        assert retried.terminal().get("done") is True
        assert retried.text.split() == words
        assert len(fake_openai.requests) == calls + 2
        messages = http.get(f"{AGENTS}/2/conversations/{cid}/messages", params={"limit": 100}).json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["before", "killed"]
    assert [m["content"] for m in messages if m["role"] == "assistant"][-1].split() == words


CLIENTS = 50


@dataclass
class Load:
    """What the clients of the rolling restart did, and every failure they saw."""

    requests: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, failure: str | None) -> None:
        with self.lock:
            self.requests[kind] += 1
            if failure is not None:
                self.failures.append(f"{kind}: {failure}")


def _client_loop(gw: Gateway, key: str, number: int, stop: threading.Event, load: Load) -> None:
    """One client: a conversation of its own, mixing JSON turns, streamed turns (some with an
    Idempotency-Key), reads of its conversation, and agent reads, until told to stop."""
    cid = None
    step = 0
    with gw.client(key, timeout=60) as http:
        while not stop.is_set():
            step += 1
            kind = ("json", "stream", "read", "stream-idempotent", "agents")[(number + step) % 5]
            try:
                if kind == "read" and cid is None or kind == "agents":
                    response = http.get(f"{AGENTS}/2")
                    failure = None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                elif kind == "read":
                    response = http.get(f"{AGENTS}/2/conversations/{cid}/messages")
                    failure = None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                elif kind == "json":
                    body = {"message": f"c{number} s{step}", **({"conversationId": cid} if cid else {})}
                    response = http.post(f"{AGENTS}/2/chat", json=body)
                    failure = None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                    if failure is None:
                        cid = response.json()["conversationId"]
                else:
                    body = {"message": f"c{number} s{step}", **({"conversationId": cid} if cid else {})}
                    headers = {"idempotency-key": f"roll-{number}-{step}"} if kind == "stream-idempotent" else {}
                    read = read_stream(http, f"{AGENTS}/2/chat", body, headers)
                    if read.status != 200:
                        failure = f"{read.status} {read.events[0].data[:200]}"
                    elif not read.complete or read.events[-1].data != "[DONE]" or not read.terminal().get("done"):
                        failure = f"stream ended without done: {[e.data[:80] for e in read.events[-2:]]}"
                    else:
                        failure = None
                        cid = read.terminal()["conversationId"]
            except (httpx.HTTPError, AssertionError, IndexError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            load.record(kind, failure)


def test_a_rolling_restart_under_50_clients_fails_no_request(gw: Gateway, fake_openai: Any) -> None:
    # Every model answer streams 5 chunks 0.1 s apart, so turns and streams are running when a
    # replica gets SIGTERM and must be drained, not cut.
    fake_openai.enqueue(*[Behaviour(chunks=5, gap=0.1)] * 20_000)
    key = gw.key()
    stop = threading.Event()
    load = Load()
    clients = [threading.Thread(target=_client_loop, args=(gw, key, n, stop, load)) for n in range(CLIENTS)]
    for client in clients:
        client.start()
    restarts = []
    try:
        time.sleep(1.0)  # every client running
        for replica in gw.replicas:
            started = time.monotonic()
            replica.signal(signal.SIGTERM)
            assert replica.wait_exit(timeout=30) in (0, -signal.SIGTERM), replica.log_tail()
            replica.start().wait_ready()
            ready_at = gw.nginx.log_size()
            restarts.append(round(time.monotonic() - started, 2))
            # As a rollout would, the next replica goes only once this one takes traffic again
            # (nginx leaves a failed replica out for fail_timeout, deploy/compose.yaml).
            gw.nginx.wait_answered_by(replica.address, after=ready_at)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    access = gw.nginx.access_log.read_text()
    drained = access.count("upstream_status=503")
    posts_resent = sum(1 for line in access.splitlines() if '"POST ' in line and "upstream_status=503 : " in line)
    print(f"rolling restart: {sum(load.requests.values())} requests {dict(load.requests)}, restarts {restarts} s, "
          f"{drained} answers of a draining replica retried by nginx ({posts_resent} POSTs resent), failures {len(load.failures)}")
    assert not load.failures, load.failures[:10]
    assert load.requests["stream"] + load.requests["stream-idempotent"] >= CLIENTS
    assert sum(load.requests.values()) >= 5 * CLIENTS
    # The drain's 503s were met (and retried on another replica), so the test saw what it is about.
    assert drained >= 1
