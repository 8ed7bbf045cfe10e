"""The chat answer as a server-sent event stream, read off a real uvicorn socket."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from chatspark.store.layout import Layout


def read_stream(http: httpx.Client, agent: int | str, **body: object) -> tuple[httpx.Response, bytes]:
    with http.stream("POST", f"/api/v1/agents/{agent}/chat", json={"stream": True, **body}) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def events(raw: bytes) -> list[object]:
    """The `data:` payloads in order (JSON decoded, `[DONE]` kept as the string)."""
    out: list[object] = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[len("data: "):]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_stream_headers_and_framing_follow_the_contract(live_client):  # type: ignore[no-untyped-def]
    response, raw = read_stream(live_client, 1, message="When are you open?")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"]
    assert "gzip" not in response.headers.get("content-encoding", "")
    # A ping is a lone comment line: a blank line after it would end an event without data, which
    # some clients (fetch-event-source) hand to the app as an empty message.
    assert raw.startswith(b": ping\n") and b": ping\n\n" not in raw
    assert b"\r" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    for line in raw.split(b"\n"):
        assert line == b"" or line.startswith((b"data: ", b"id: ")) or line == b": ping", line
    # Every event carries the next id: 1, 2, 3, …, [DONE] included.
    blocks = [b for b in raw.replace(b": ping\n", b"").split(b"\n\n") if b.startswith(b"id: ")]
    assert [int(b.split(b"\n")[0][4:]) for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(b.split(b"\n")[1].startswith(b"data: ") for b in blocks)


def test_stream_deltas_join_to_the_answer_and_end_with_one_done(live_client):  # type: ignore[no-untyped-def]
    _, raw = read_stream(live_client, 1, message="When are you open?")
    got = events(raw)
    assert got[-1] == "[DONE]"
    done = got[-2]
    deltas = got[:-2]
    assert len(deltas) > 1
    text = "".join(d["delta"] for d in deltas)
    assert "Monday to Friday" in text
    assert all(d["conversationId"] == done["conversationId"] and "done" not in d for d in deltas)
    assert done["done"] is True and done["delta"] == ""
    assert done["messageId"].startswith("msg_") and done["model"] == "local"
    assert set(done["usage"]) == {"promptTokens", "completionTokens"}
    assert done["expiresAt"].endswith("Z")
    assert sum(1 for e in got if isinstance(e, dict) and (e.get("done") or e.get("error"))) == 1


def test_a_streamed_turn_is_stored_and_continues_as_json(live_client, live_server, raw_redis):  # type: ignore[no-untyped-def]
    _, raw = read_stream(live_client, 2, message="Remember: blue.")
    done = events(raw)[-2]
    _, turns, _ = Layout(live_server.config.store.prefix).conversation(done["conversationId"])
    stored = [json.loads(t) for t in raw_redis.lrange(turns, 0, -1)]
    assert [t["id"] for t in stored] == [done["messageId"]]
    assert stored[0]["query"] == "Remember: blue."
    follow = live_client.post("/api/v1/agents/2/chat", json={"message": "Color?", "conversationId": done["conversationId"]})
    assert follow.status_code == 200
    assert follow.json()["context"]["turnsIncluded"] == 1


def test_stream_from_the_provider_relays_its_chunks(live_client, fake_openai):  # type: ignore[no-untyped-def]
    _, raw = read_stream(live_client, 2, message="one two three four")
    got = events(raw)
    deltas = [e["delta"] for e in got[:-2]]
    assert len(deltas) >= 3
    assert "".join(deltas) == "You said: one two three four. I saw 2 messages."
    assert got[-2]["model"] == "gpt-4o-mini"
    assert fake_openai.requests[-1]["stream"] is True


def test_errors_before_the_stream_starts_are_plain_json(live_client):  # type: ignore[no-untyped-def]
    response, raw = read_stream(live_client, 1, message="   ")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(raw)["error"]["code"] == "VALIDATION_ERROR"
    response, raw = read_stream(live_client, 1, message="hi", conversationId="B" * 32)
    assert response.status_code == 404


async def _events_then_close(send_log: list[dict[str, object]], *burst: bytes) -> None:
    from chatspark.sse import EventStream

    async def events():  # type: ignore[no-untyped-def]
        for event in burst:  # a provider's burst: every event ready without waiting
            yield event

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the client stays
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        send_log.append(message)

    await EventStream(events(), ping_seconds=30)({"type": "http"}, receive, send)


@pytest.mark.anyio
async def test_events_queued_together_leave_in_one_write():  # type: ignore[no-untyped-def]
    sent: list[dict[str, object]] = []
    await _events_then_close(sent, b"id: 1\ndata: a\n\n", b"id: 2\ndata: b\n\n", b"id: 3\ndata: [DONE]\n\n")
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    # The leading ping, the three events in one body, the end of the response.
    assert bodies == [b": ping\n", b"id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: [DONE]\n\n", b""]
    assert sent[-1]["more_body"] is False


@pytest.mark.anyio
async def test_a_client_that_stops_reading_stops_the_reads_from_the_model():  # type: ignore[no-untyped-def]
    from chatspark.sse import EventStream, _Relay

    pulled = 0
    stuck = asyncio.Event()

    async def events():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for n in range(1000):
            pulled += 1
            yield b"id: %d\ndata: x\n\n" % n

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message.get("body", b"").startswith(b"id: "):  # type: ignore[union-attr]
            stuck.set()
            await asyncio.Event().wait()  # the client's window is full: this write never completes

    response = asyncio.ensure_future(EventStream(events(), ping_seconds=30)({"type": "http"}, receive, send))
    await stuck.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    # The answer does not pile up in memory: the model's stream is read a bounded way ahead.
    assert pulled <= 2 * _Relay.MAX_QUEUED
    response.cancel()
    with pytest.raises(asyncio.CancelledError):
        await response
