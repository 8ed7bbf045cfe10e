"""Turn safety: one turn at a time per conversation, idempotent turns across replicas, stream ids
and heartbeats, a disconnect with and without an Idempotency-Key, and a draining SIGTERM."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatspark.store.layout import Layout
from tests.fake_openai import error, reply, silent_stream, slow
from tests.test_chat_stream import events

AGENTS = "/api/v1/agents"


def new_agent(http, **fields):  # type: ignore[no-untyped-def]
    body = {"name": f"Safe {secrets.token_hex(3)}", "model": "gpt-4o-mini", "historyTurns": 100, **fields}
    return http.post(AGENTS, json=body).json()["agent"]["id"]


def stored_queries(server, raw_redis, cid):  # type: ignore[no-untyped-def]
    _, turns, _ = Layout(server.config.store.prefix).conversation(cid)
    return [json.loads(t)["query"] for t in raw_redis.lrange(turns, 0, -1)]


def without_pings(raw: bytes) -> bytes:
    return raw.replace(b": ping\n", b"")


# --- one turn at a time ------------------------------------------------------------------------


def test_fifty_parallel_turns_run_one_at_a_time_and_are_stored_once_in_order(client, server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    agent = new_agent(client)
    cid = client.post(f"{AGENTS}/{agent}/chat", json={"message": "start"}).json()["conversationId"]
    fake_openai.enqueue(*[slow(0.03) for _ in range(50)])
    busy = []

    def send(n: int) -> dict:  # type: ignore[type-arg]
        with server.client(client.headers["authorization"][7:]) as http:
            for _ in range(2000):
                response = http.post(f"{AGENTS}/{agent}/chat", json={"message": f"m{n}", "conversationId": cid})
                if response.status_code == 200:
                    return response.json()
                assert response.status_code == 409, response.text
                assert response.json()["error"]["code"] == "CONVERSATION_BUSY"
                assert response.json()["error"]["retryable"] is True
                assert response.headers["retry-after"] == "1"
                busy.append(n)
                time.sleep(0.01 + secrets.randbelow(20) / 1000)
        raise AssertionError("never got a turn")

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(send, range(50)))
    assert busy, "no request ever met a running turn: the test did not test anything"
    assert fake_openai.max_in_flight == 1
    # A turn that ran k-th saw the k turns before it: all distinct means none overlapped.
    order = sorted(answers, key=lambda a: a["context"]["turnsIncluded"])
    assert [a["context"]["turnsIncluded"] for a in order] == list(range(1, 51))
    queries = stored_queries(server, raw_redis, cid)
    assert queries == ["start"] + [a["text"].split("You said: ")[1].split(". I saw")[0] for a in order]
    assert sorted(queries[1:]) == sorted(f"m{n}" for n in range(50))


def test_a_crashed_replicas_lease_blocks_only_until_it_lapses(client, server, raw_redis):  # type: ignore[no-untyped-def]
    agent = new_agent(client, model="local")
    cid = client.post(f"{AGENTS}/{agent}/chat", json={"message": "hi"}).json()["conversationId"]
    raw_redis.set(Layout(server.config.store.prefix).lease(cid), "crashed-replica", px=600)
    blocked = client.post(f"{AGENTS}/{agent}/chat", json={"message": "again", "conversationId": cid})
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "CONVERSATION_BUSY"
    deadline = time.monotonic() + 1.8  # 3x the lease
    while time.monotonic() < deadline:
        response = client.post(f"{AGENTS}/{agent}/chat", json={"message": "again", "conversationId": cid})
        if response.status_code == 200:
            break
        time.sleep(0.05)
    assert response.status_code == 200


def test_a_long_turn_keeps_its_lease_and_the_lease_goes_with_the_turn(start_server, fake_openai, provider_key, raw_redis):  # type: ignore[no-untyped-def]
    server = start_server(fake_openai.base_url, store={"lease_seconds": 0.3})
    with server.client(server.key()) as http:
        agent = new_agent(http)
        cid = http.post(f"{AGENTS}/{agent}/chat", json={"message": "start"}).json()["conversationId"]
        fake_openai.enqueue(slow(1.5))  # 5x the lease: only renewal keeps it
        first: dict = {}  # type: ignore[type-arg]
        runner = threading.Thread(
            target=lambda: first.update(response=http.post(f"{AGENTS}/{agent}/chat", json={"message": "long", "conversationId": cid}))
        )
        runner.start()
        time.sleep(1.0)
        with server.client(http.headers["authorization"][7:]) as other:
            second = other.post(f"{AGENTS}/{agent}/chat", json={"message": "cut in", "conversationId": cid})
        runner.join()
    assert second.status_code == 409
    assert first["response"].status_code == 200
    assert raw_redis.exists(Layout(server.config.store.prefix).lease(cid)) == 0


def test_a_second_message_on_a_brand_new_streaming_conversation_is_busy_not_unknown(live_client, fake_openai):  # type: ignore[no-untyped-def]
    agent = new_agent(live_client)
    fake_openai.enqueue(reply("one two three four five", chunks=5, gap=0.3))
    with live_client.stream("POST", f"{AGENTS}/{agent}/chat", json={"message": "hi", "stream": True}) as stream:
        lines = stream.iter_lines()
        first = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))
        cut_in = live_client.post(f"{AGENTS}/{agent}/chat", json={"message": "me too", "conversationId": first["conversationId"]})
        rest = list(lines)
    assert cut_in.status_code == 409
    assert any('"done":true' in line for line in rest)


# --- idempotent turns --------------------------------------------------------------------------


def test_an_idempotent_json_turn_replays_without_a_model_call(client, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = client.post(f"{AGENTS}/2/chat", json={"message": "once"}, headers=key)
    calls = len(fake_openai.requests)
    again = client.post(f"{AGENTS}/2/chat", json={"message": "once"}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(fake_openai.requests) == calls
    other = client.post(f"{AGENTS}/2/chat", json={"message": "twice"}, headers=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    as_stream = client.post(f"{AGENTS}/2/chat", json={"message": "once", "stream": True}, headers=key)
    assert as_stream.status_code == 409


def test_concurrent_requests_with_one_key_share_one_model_call(client, server, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    fake_openai.enqueue(slow(0.8))

    def send(_: int):  # type: ignore[no-untyped-def]
        with server.client(client.headers["authorization"][7:]) as http:
            return http.post(f"{AGENTS}/2/chat", json={"message": "together"}, headers=key)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["messageId"] for a in answers}) == 1
    assert len(fake_openai.requests) == 1


def test_a_failed_idempotent_turn_runs_again_on_retry(client, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    fake_openai.enqueue(error(500))
    failed = client.post(f"{AGENTS}/2/chat", json={"message": "retry me"}, headers=key)
    assert failed.status_code == 502
    retried = client.post(f"{AGENTS}/2/chat", json={"message": "retry me"}, headers=key)
    assert retried.status_code == 200
    assert len(fake_openai.requests) == 2


def test_idempotency_keys_are_scoped_per_api_key(server, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": "shared-by-two-clients"}
    with server.client(server.key()) as one, server.client(server.key()) as two:
        a = one.post(f"{AGENTS}/2/chat", json={"message": "x"}, headers=key).json()
        b = two.post(f"{AGENTS}/2/chat", json={"message": "x"}, headers=key).json()
    assert a["conversationId"] != b["conversationId"]
    assert len(fake_openai.requests) == 2


def test_an_overlong_idempotency_key_is_a_validation_error(client):  # type: ignore[no-untyped-def]
    response = client.post(f"{AGENTS}/1/chat", json={"message": "x"}, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]["fields"]


def test_an_idempotent_stream_replays_the_same_events(client, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first, raw = read_stream_with(client, key, message="stream once")
    calls = len(fake_openai.requests)
    again, raw_again = read_stream_with(client, key, message="stream once")
    assert without_pings(raw_again) == without_pings(raw)
    assert events(raw)[-2]["done"] is True
    assert again.headers["idempotent-replayed"] == "true"
    assert len(fake_openai.requests) == calls
    resumed, raw_resumed = read_stream_with(client, {**key, "Last-Event-ID": "2"}, message="stream once")
    assert without_pings(raw).endswith(without_pings(raw_resumed))
    assert b"id: 1\n" not in raw_resumed and b"id: 3\n" in raw_resumed


def test_a_second_request_attaches_to_a_running_stream(client, server, fake_openai):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    fake_openai.enqueue(reply("a b c d e f", chunks=6, gap=0.2))
    results: dict = {}  # type: ignore[type-arg]
    first = threading.Thread(target=lambda: results.update(first=read_stream_with(client, key, message="attach")[1]))
    first.start()
    time.sleep(0.5)
    with server.client(client.headers["authorization"][7:]) as other:
        _, attached = read_stream_with(other, key, message="attach")
    first.join()
    assert without_pings(attached) == without_pings(results["first"])
    assert events(attached)[-2]["done"] is True
    assert len(fake_openai.requests) == 1


def test_a_disconnect_with_an_idempotency_key_still_completes_and_stores_the_turn(live_client, live_server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    key = secrets.token_hex(8)
    fake_openai.enqueue(reply("one two three four", chunks=4, gap=0.3))
    with raw_socket_stream(live_server, live_client, {"message": "keep going", "stream": True}, key) as sock:
        head = sock.recv(65536)
        assert b" 200 " in head.split(b"\r\n")[0]
    # The client left; the turn goes on and is stored.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        _, raw = read_stream_with(live_client, {"Idempotency-Key": key}, message="keep going")
        if events(raw)[-2].get("done"):
            break
    done = events(raw)[-2]
    assert done["done"] is True
    assert stored_queries(live_server, raw_redis, done["conversationId"]) == ["keep going"]
    assert fake_openai.closed_streams == []
    assert len(fake_openai.requests) == 1


def test_an_idempotent_retry_on_another_server_process_replays_without_a_model_call(server, client, fake_openai, spawn_server):  # type: ignore[no-untyped-def]
    other = spawn_server(fake_openai.base_url)
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = client.post(f"{AGENTS}/2/chat", json={"message": "across"}, headers=key)
    calls = len(fake_openai.requests)
    with other.client(client.headers["authorization"][7:]) as http:
        again = http.post(f"{AGENTS}/2/chat", json={"message": "across"}, headers=key)
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(fake_openai.requests) == calls


# --- the stream contract -----------------------------------------------------------------------


def test_heartbeats_arrive_on_time_behind_a_silent_model(start_live_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    # A model silent for 40 s behind 15 s pings, scaled down 20x: silent 2 s, pings every 0.1 s... .75 s.
    server = start_live_server(fake_openai.base_url, ping_seconds=0.25)
    fake_openai.enqueue(silent_stream(2.0))
    with server.client(server.key()) as http:
        arrivals = []
        with http.stream("POST", f"{AGENTS}/2/chat", json={"message": "hi", "stream": True}) as response:
            started = time.monotonic()
            for chunk in response.iter_raw():
                if chunk.startswith(b": ping"):
                    arrivals.append(time.monotonic() - started)
    assert arrivals[0] < 0.5  # one at once
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) >= 5
    assert max(gaps) < 0.75  # 3x the interval


def test_sigterm_answers_new_requests_503_and_lets_a_running_stream_finish(server, client, fake_openai, spawn_server):  # type: ignore[no-untyped-def]
    draining = spawn_server(fake_openai.base_url, CHATSPARK_DRAIN_SECONDS="20")
    fake_openai.enqueue(reply("a b c d e f g h", chunks=8, gap=0.25))
    key = client.headers["authorization"][7:]
    with draining.client(key) as http, http.stream("POST", f"{AGENTS}/2/chat", json={"message": "x", "stream": True}) as stream:
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        draining.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with draining.client(key) as fresh:
            refused = fresh.post(f"{AGENTS}/1/chat", json={"message": "new"})
        rest = list(lines)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert refused.json()["error"]["retryable"] is True
    assert any('"done":true' in line for line in rest)
    assert rest[-1] == "data: [DONE]" or rest[-2] == "data: [DONE]"
    assert draining.process.wait(timeout=15) in (0, -signal.SIGTERM)


# --- helpers -----------------------------------------------------------------------------------


def read_stream_with(http, headers, **body):  # type: ignore[no-untyped-def]
    with http.stream("POST", f"{AGENTS}/2/chat", json={"stream": True, **body}, headers=headers) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


class raw_socket_stream:  # noqa: N801 (a context manager used like a function)
    def __init__(self, server, client, body, key):  # type: ignore[no-untyped-def]
        payload = json.dumps(body).encode()
        self.request = (
            b"POST /api/v1/agents/2/chat HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            + f"authorization: {client.headers['authorization']}\r\nidempotency-key: {key}\r\n".encode()
            + f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        self.port = server.port

    def __enter__(self) -> socket.socket:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.sendall(self.request)
        return self.sock

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


pytestmark = pytest.mark.timeout(120)
