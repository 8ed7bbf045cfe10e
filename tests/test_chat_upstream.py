"""What a client sees when the model provider fails: enveloped errors, in-stream errors, fallbacks,
pings while the model is silent, and a disconnect that closes the upstream connection."""

from __future__ import annotations

import json
import socket
import time

import pytest

from chatspark.store.layout import Layout
from tests.fake_openai import drop_mid_stream, error, not_sse, refused_base_url, silent_stream, slow
from tests.test_chat_stream import events, read_stream


def chat(http, agent, **body):  # type: ignore[no-untyped-def]
    return http.post(f"/api/v1/agents/{agent}/chat", json=body)


def stored_turns(server, raw_redis, cid: str) -> int:  # type: ignore[no-untyped-def]
    _, turns, _ = Layout(server.config.store.prefix).conversation(cid)
    return int(raw_redis.llen(turns))


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (401, False)])
def test_provider_errors_are_upstream_error_and_store_nothing(client, server, raw_redis, fake_openai, status, retryable):  # type: ignore[no-untyped-def]
    cid = chat(client, 2, message="first").json()["conversationId"]
    fake_openai.enqueue(error(status))
    response = chat(client, 2, message="second", conversationId=cid)
    assert response.status_code == 502
    body = response.json()["error"]
    assert body["code"] == "UPSTREAM_ERROR"
    assert body.get("retryable", False) is retryable
    assert stored_turns(server, raw_redis, cid) == 1


def test_configured_retries_absorb_a_transient_provider_error(start_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    server = start_server(fake_openai.base_url, provider_models={"retries": 1})
    fake_openai.enqueue(error(500))
    with server.client(server.key()) as http:
        response = chat(http, 2, message="hi")
    assert response.status_code == 200
    assert len(fake_openai.requests) == 2


def test_a_provider_past_the_timeout_is_upstream_timeout(start_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    server = start_server(fake_openai.base_url, provider_models={"timeout_seconds": 0.5})
    fake_openai.enqueue(slow(5))
    with server.client(server.key()) as http:
        started = time.monotonic()
        response = chat(http, 2, message="hi")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "UPSTREAM_TIMEOUT"
    assert response.json()["error"]["retryable"] is True
    assert time.monotonic() - started < 4  # the 0.5 s timeout, not the provider's 5 s


def test_a_refused_provider_connection_is_upstream_error(start_server, provider_key):  # type: ignore[no-untyped-def]
    server = start_server(refused_base_url())
    with server.client(server.key()) as http:
        response = chat(http, 2, message="hi")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "UPSTREAM_ERROR"
    assert response.json()["error"]["retryable"] is True


def test_gpt4_falls_back_to_gpt4o_mini_and_says_so(client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(error(500))
    response = chat(client, 3, message="hi")
    assert response.status_code == 200
    assert response.json()["model"] == "gpt-4o-mini"
    assert [r["model"] for r in fake_openai.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_a_stream_that_fails_before_its_first_delta_ends_with_one_error_event(client, server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    cid = chat(client, 2, message="first").json()["conversationId"]
    fake_openai.enqueue(error(500))
    response, raw = read_stream(client, 2, message="second", conversationId=cid)
    assert response.status_code == 200
    got = events(raw)
    assert got[-1] == "[DONE]"
    assert len(got) == 2
    failure = got[0]["error"]
    assert failure["code"] == "STREAMING_ERROR"
    assert failure["details"] == {"cause": "UPSTREAM_ERROR"}
    assert failure["retryable"] is True
    assert stored_turns(server, raw_redis, cid) == 1


def test_a_stream_dropped_midway_ends_with_an_error_and_stores_nothing(client, server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    cid = chat(client, 2, message="first").json()["conversationId"]
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    _, raw = read_stream(client, 2, message="one two three four five six", conversationId=cid)
    got = events(raw)
    deltas = [e for e in got if isinstance(e, dict) and "error" not in e]
    assert len(deltas) == 2
    assert got[-2]["conversationId"] == cid  # a stored conversation: it is named
    assert got[-2]["error"]["details"] == {"cause": "UPSTREAM_ERROR"}
    assert not any(isinstance(e, dict) and e.get("done") for e in got)
    assert stored_turns(server, raw_redis, cid) == 1


def test_a_failed_first_turn_names_no_conversation(client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    _, raw = read_stream(client, 2, message="one two three four five six")
    got = events(raw)
    cid = got[0]["conversationId"]
    assert got[-2]["error"]["code"] == "STREAMING_ERROR" and got[-2]["conversationId"] == ""
    assert client.get(f"/api/v1/agents/2/conversations/{cid}").status_code == 404  # never stored


def test_a_stream_with_a_non_sse_body_is_an_error_not_an_empty_answer(client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(not_sse())
    _, raw = read_stream(client, 2, message="hi")
    got = events(raw)
    assert got[-2]["error"]["code"] == "STREAMING_ERROR"


def test_a_silent_model_stream_times_out_with_a_cause(start_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    server = start_server(fake_openai.base_url, provider_models={"timeout_seconds": 0.5})
    fake_openai.enqueue(silent_stream(5))
    with server.client(server.key()) as http:
        _, raw = read_stream(http, 2, message="hi")
    assert events(raw)[-2]["error"]["details"] == {"cause": "UPSTREAM_TIMEOUT"}


def test_pings_keep_a_silent_stream_alive(start_live_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    # 0.2 s pings behind a model silent for 1.5 s: about 8 pings; at least 3 allows for a noisy machine.
    server = start_live_server(fake_openai.base_url, ping_seconds=0.2)
    fake_openai.enqueue(silent_stream(1.5))
    with server.client(server.key()) as http:
        _, raw = read_stream(http, 2, message="hi")
    before_first_delta = raw.split(b"data: ")[0]
    assert before_first_delta.count(b": ping\n") >= 3
    assert events(raw)[-2]["done"] is True


def test_a_client_disconnect_closes_the_upstream_and_stores_nothing(live_client, live_server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    cid = chat(live_client, 2, message="first").json()["conversationId"]
    fake_openai.enqueue(silent_stream(20))
    body = json.dumps({"message": "second", "conversationId": cid, "stream": True}).encode()
    key = live_client.headers["authorization"]
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/agents/2/chat HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            + f"authorization: {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert b": ping" in sock.recv(4096)  # the stream started, the model is silent
        deadline = time.monotonic() + 5
        while len(fake_openai.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fake_openai.requests) == 2, "the model call did not start"
        hung_up = time.monotonic()
    deadline = hung_up + 3  # the contract says within 1 s; 3x slack for a noisy machine
    while not fake_openai.closed_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_openai.closed_streams, "the upstream connection stayed open after the client left"
    assert fake_openai.closed_streams[0] - hung_up < 3
    time.sleep(0.3)
    assert stored_turns(live_server, raw_redis, cid) == 1
