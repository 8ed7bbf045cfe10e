"""The events a conversation, a turn and a lead produce (message.sent, conversation.started,
conversation.ended, lead.captured), delivered to a real receiver: each written by the same script as
the change it reports, so exactly one event per change whatever path made it (JSON, stream,
idempotent replay, widget), and none lost when the replica dies right after acknowledging.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from redis.crc import key_slot as redis_key_slot

from chatspark.config import DEFAULT_PATH as DEFAULT_CONFIG
from chatspark.store.layout import SLOTS, Layout, _slot_tags, key_slot
from tests.conftest import InProcessServer, make_config
from tests.test_webhooks import (  # noqa: F401  (fixtures)
    WAIT, Receiver, app, http, new_agent, receiver, register, start_app, verify,
)

AGENTS = "/api/v1/agents"
TURN_EVENTS = ["conversation.started", "message.sent"]


def chat(http: httpx.Client, agent: int, message: str, cid: str | None = None, **more: Any) -> httpx.Response:
    body = {"message": message, **({"conversationId": cid} if cid else {}), **more.pop("body", {})}
    return http.post(f"{AGENTS}/{agent}/chat", json=body, **more)


def done_event(stream: httpx.Response) -> dict:  # type: ignore[type-arg]
    events = [json.loads(line[6:]) for line in stream.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert events and events[-1].get("done"), stream.text
    return events[-1]


def data_of(received: list[Any]) -> list[dict]:  # type: ignore[type-arg]
    return [r.json["data"] for r in received]


def settle(receiver: Receiver, path: str, seconds: float = 1.5) -> None:
    """Waits until nothing more arrives for `seconds` (a duplicate would come within that)."""
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        now = len(receiver.received(path))
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        time.sleep(0.1)


# -- the per-slot outboxes (cluster mode) -----------------------------------------------------------


def test_one_outbox_per_slot_and_each_lands_in_its_slot() -> None:
    tags = _slot_tags("cs-slot-test")
    assert len(tags) == SLOTS and len(set(tags)) == SLOTS
    for slot in (0, 1, 5061, 12182, SLOTS - 1):
        assert redis_key_slot(f"{{{tags[slot]}}}:outbox".encode()) == slot
    layout = Layout("cs-slot-test")
    for cid in ("abc", secrets.token_urlsafe(24), secrets.token_urlsafe(24)):
        meta = layout.conversation(cid)[0]
        assert key_slot(meta) == redis_key_slot(meta.encode())
        assert redis_key_slot(layout.webhook_outbox(meta).encode()) == redis_key_slot(meta.encode())
    # Two conversations in one slot share its outbox: no more outboxes than slots.
    assert layout.webhook_outbox("{x}:a") == layout.webhook_outbox("{x}:b")


# -- turns -----------------------------------------------------------------------------------------


def test_fifty_parallel_turns_send_exactly_a_hundred_messages_and_each_conversation_starts_once(app, http, receiver):  # type: ignore[no-untyped-def]
    """10 conversations × 5 turns, sent at once (a conversation's turns meet CONVERSATION_BUSY and
    retry), by JSON, by stream and with an Idempotency-Key sent twice: every completed turn sends its
    user and its assistant message once, each conversation starts once, and a replay sends nothing."""
    agent = new_agent(http)
    register(http, receiver.url("/turns"), TURN_EVENTS, agentIds=[agent])
    key = http.headers["authorization"][7:]
    firsts = [chat(http, agent, f"c{c} t0").json() for c in range(10)]
    cids = [f["conversationId"] for f in firsts]

    def send(n: int) -> tuple[str, str, str]:
        cid, message = cids[n % 10], f"c{n % 10} t{n // 10 + 1}"
        style = n % 3  # 0 JSON, 1 stream, 2 JSON with an Idempotency-Key, sent again once answered
        headers = {"idempotency-key": f"turn-{n}"} if style == 2 else {}
        with app.client(key) as own:
            for _ in range(3000):
                answer = chat(own, agent, message, cid, body={"stream": style == 1}, headers=headers)
                if answer.status_code == 200:
                    message_id = done_event(answer)["messageId"] if style == 1 else answer.json()["messageId"]
                    if style == 2:
                        again = chat(own, agent, message, cid, headers=headers)
                        assert again.status_code == 200 and again.json()["messageId"] == message_id
                    return cid, message, message_id
                assert answer.status_code == 409 and answer.json()["error"]["code"] == "CONVERSATION_BUSY", answer.text
                time.sleep(0.005 + secrets.randbelow(10) / 1000)
        raise AssertionError("never got a turn")

    with ThreadPoolExecutor(50) as pool:
        sent = list(pool.map(send, range(50)))
    receiver.wait_for(120, "/turns")
    settle(receiver, "/turns")
    received = receiver.received("/turns")
    messages = data_of([r for r in received if r.event == "message.sent"])
    started = data_of([r for r in received if r.event == "conversation.started"])
    assert len(messages) == 120 and len(started) == 10  # the 10 first turns, then the 50
    assert len({m["messageId"] for m in messages}) == 120
    assert sorted(s["conversationId"] for s in started) == sorted(cids)
    parallel = [m for m in messages if not m["content"].endswith(" t0") and m["role"] == "user"]
    assert len(parallel) == 50
    assert sorted(m["content"] for m in parallel) == sorted(message for _, message, _ in sent)
    answers = {m["messageId"]: m for m in messages if m["role"] == "assistant"}
    for cid, message, message_id in sent:
        assert answers[message_id]["conversationId"] == cid
    assert Counter(m["conversationId"] for m in messages) == {cid: 12 for cid in cids}
    assert len({r.delivery for r in received}) == 130  # a delivery id per event


def test_message_sent_carries_the_documented_fields_signed(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    webhook, secret = register(http, receiver.url("/one"), ["message.sent", "conversation.started"], agentIds=[agent])
    answer = chat(http, agent, "What are your hours?").json()
    got = receiver.wait_for(3, "/one")
    for r in got:
        verify(r, secret)
    by_event = {(r.event, r.json["data"].get("role")): r.json for r in got}
    user, assistant = by_event[("message.sent", "user")], by_event[("message.sent", "assistant")]
    started = by_event[("conversation.started", None)]
    assert set(user["data"]) == {"messageId", "conversationId", "agentId", "role", "content", "createdAt"}
    assert user["data"]["content"] == "What are your hours?" and user["data"]["agentId"] == agent
    assert assistant["data"] == {"messageId": answer["messageId"], "conversationId": answer["conversationId"],
                                 "agentId": agent, "role": "assistant", "content": answer["text"],
                                 "createdAt": assistant["data"]["createdAt"]}
    assert started["data"] == {"conversationId": answer["conversationId"], "agentId": agent,
                               "createdAt": user["data"]["createdAt"]}
    assert user["data"]["messageId"].startswith("msg_") and user["data"]["messageId"] != answer["messageId"]
    stored = http.get(f"{AGENTS}/{agent}/conversations/{answer['conversationId']}/messages").json()["messages"]
    assert [m["id"] for m in stored] == [user["data"]["messageId"], answer["messageId"]]


def test_a_widget_turn_sends_its_messages_like_any_other(start_app, receiver):  # type: ignore[no-untyped-def]
    app = start_app()
    origin = "https://shop.example"
    with app.client(app.key("test")) as admin, app.client() as browser:
        made = admin.post(AGENTS, json={"name": "widget", "model": "local", "allowedOrigins": [origin]})
        agent = made.json()["agent"]["id"]
        register(admin, receiver.url("/widget"), TURN_EVENTS, agentIds=[agent])
        token = browser.post(f"/api/v1/widget/{agent}/session", json={}, headers={"origin": origin}).json()["visitorToken"]
        answer = browser.post(f"/api/v1/widget/{agent}/chat", json={"message": "Hello there"},
                              headers={"origin": origin, "chatspark-visitor": token})
        assert answer.status_code == 200, answer.text
    got = receiver.wait_for(3, "/widget")
    assert sorted(r.event for r in got) == ["conversation.started", "message.sent", "message.sent"]
    assert {r.json["data"]["conversationId"] for r in got} == {answer.json()["conversationId"]}


def test_a_failed_turn_sends_nothing(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    register(http, receiver.url("/failed"), TURN_EVENTS + ["lead.captured"], agentIds=[agent])
    assert chat(http, agent, "   ").status_code == 400
    assert chat(http, agent, "hi", "no-such-conversation-0123456789abcdef").status_code == 404
    ok = chat(http, agent, "hi")
    assert ok.status_code == 200
    receiver.wait_for(3, "/failed")
    settle(receiver, "/failed")
    assert len(receiver.received("/failed")) == 3


# -- conversations ending --------------------------------------------------------------------------


def test_conversation_ended_when_deleted_when_its_agent_is_deleted_and_when_it_expires(start_app, receiver):  # type: ignore[no-untyped-def]
    app = start_app(expired_sweep_seconds=0.3)
    with app.client(app.key("test")) as http:
        agent = new_agent(http)
        doomed = new_agent(http, "doomed")
        fleeting = http.post(AGENTS, json={"name": "fleeting", "model": "local", "conversationTtlSeconds": 1}).json()["agent"]["id"]
        register(http, receiver.url("/ended"), ["conversation.ended"])
        deleted = chat(http, agent, "hi").json()["conversationId"]
        kept = chat(http, agent, "hi").json()["conversationId"]
        of_doomed = {chat(http, doomed, "hi").json()["conversationId"] for _ in range(3)}
        expiring = chat(http, fleeting, "hi").json()["conversationId"]
        assert http.delete(f"{AGENTS}/{agent}/conversations/{deleted}").status_code == 204
        assert http.delete(f"{AGENTS}/{agent}/conversations/{deleted}").status_code == 404  # no second event
        assert http.delete(f"{AGENTS}/{doomed}").status_code == 204
        got = receiver.wait_for(5, "/ended")  # the expiry comes from the sweep: no turn of `fleeting` follows
        settle(receiver, "/ended")
    ended = {d["conversationId"]: d for d in data_of(receiver.received("/ended"))}
    assert len(receiver.received("/ended")) == 5 and kept not in ended
    assert ended[deleted]["reason"] == "deleted" and ended[deleted]["agentId"] == agent
    assert {c for c, d in ended.items() if d["reason"] == "agent_deleted"} == of_doomed
    assert ended[expiring]["reason"] == "expired" and ended[expiring]["agentId"] == fleeting
    assert set(ended[expiring]) == {"conversationId", "agentId", "endedAt", "reason"}
    assert got and all(d["endedAt"].endswith("Z") and len(d["endedAt"]) == 24 for d in ended.values())


def test_the_expiry_a_turn_write_finds_is_reported_once_with_the_expiry_time(start_app, receiver):  # type: ignore[no-untyped-def]
    """A turn of the agent unindexes its expired conversations itself (before any sweep: the sweep
    here is an hour away); the event's time is the expiry, formatted as the API formats times."""
    app = start_app(expired_sweep_seconds=3600)
    with app.client(app.key("test")) as http:
        fleeting = http.post(AGENTS, json={"name": "f", "model": "local", "conversationTtlSeconds": 1}).json()["agent"]["id"]
        register(http, receiver.url("/expired"), ["conversation.ended"])
        first = chat(http, fleeting, "hi").json()
        time.sleep(1.5)
        chat(http, fleeting, "a new one")
        [got] = receiver.wait_for(1, "/expired")
        settle(receiver, "/expired")
    assert len(receiver.received("/expired")) == 1
    assert got.json["data"]["conversationId"] == first["conversationId"]
    assert got.json["data"]["endedAt"] == first["expiresAt"]
    assert got.json["timestamp"] == first["expiresAt"]


# -- leads -----------------------------------------------------------------------------------------


def test_lead_captured_once_per_lead_with_its_fields(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    webhook, secret = register(http, receiver.url("/leads"), ["lead.captured"], agentIds=[agent])
    body = {"name": "Ada", "email": "ada@example.com", "companyName": "Engines Ltd", "message": "Call me"}
    made = http.post(f"{AGENTS}/{agent}/leads", json=body, headers={"idempotency-key": "lead-1"})
    again = http.post(f"{AGENTS}/{agent}/leads", json=body, headers={"idempotency-key": "lead-1"})
    assert made.status_code == 201 and again.json()["lead"]["id"] == made.json()["lead"]["id"]
    [got] = receiver.wait_for(1, "/leads")
    settle(receiver, "/leads")
    assert len(receiver.received("/leads")) == 1
    verify(got, secret)
    lead = made.json()["lead"]
    assert got.json["data"] == {"leadId": lead["id"], "agentId": agent, "name": "Ada", "email": "ada@example.com",
                                "phone": None, "companyName": "Engines Ltd", "message": "Call me",
                                "conversationId": None, "createdAt": lead["createdAt"]}


# -- nothing lost ----------------------------------------------------------------------------------


def test_turn_events_acknowledged_by_a_replica_killed_right_after_still_arrive(  # type: ignore[no-untyped-def]
    spawn_server, start_app, fake_openai, receiver, redis_url, key_prefix, tmp_path
):
    """SIGKILL right after the turn's answer: its three events were written with the turn, so
    another replica delivers them."""
    prefix = f"{key_prefix}-wh-turnkill-{secrets.token_hex(3)}"
    config = DEFAULT_CONFIG.read_text().replace('backend = "litellm"', 'backend = "openai"').replace(
        "[webhooks]\n", "[webhooks]\nallow_private_urls = true\n").replace("claim_idle_seconds = 60 ", "claim_idle_seconds = 1 ")
    path = tmp_path / "config.toml"
    path.write_text(config)
    doomed = spawn_server(fake_openai.base_url, CHATSPARK_CONFIG=str(path), CHATSPARK_REDIS_PREFIX=prefix)
    key = InProcessServer(make_config(redis_url, prefix, knowledge={"seed": []})).key("test")
    with doomed.client(key) as http:
        agent = new_agent(http)
        register(http, receiver.plan("/kill", "hang", 200), TURN_EVENTS, agentIds=[agent])
        answer = chat(http, agent, "last words")
        assert answer.status_code == 200, answer.text
    doomed.process.kill()
    doomed.process.wait(10)
    start_app(prefix, claim_idle_seconds=1.0)
    receiver.wait_for(3, "/kill", timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while True:  # a "hang" answer held by the dead replica's attempt is retried by the survivor
        roles = {(r.event, r.json["data"].get("role")) for r in receiver.received("/kill")}
        if len(roles) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert roles == {("conversation.started", None), ("message.sent", "user"), ("message.sent", "assistant")}
    assert answer.json()["messageId"] in {r.json["data"].get("messageId") for r in receiver.received("/kill")}


@pytest.mark.parametrize("sweep", [0.3])
def test_nobody_subscribed_leaves_no_event_behind(start_app, raw_redis, sweep):  # type: ignore[no-untyped-def]
    """Events no webhook wants leave the outbox without a delivery record."""
    app = start_app(expired_sweep_seconds=sweep)
    outbox = Layout(app.config.store.prefix).webhook_outbox()
    with app.client(app.key("test")) as http:
        agent = new_agent(http)
        for _ in range(5):
            assert chat(http, agent, "hi").status_code == 200
        deadline = time.monotonic() + WAIT
        while raw_redis.xlen(outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert raw_redis.xlen(outbox) == 0
    assert not raw_redis.keys(f"{{{app.config.store.prefix}:webhooks}}:dlv:*")


def test_a_turn_through_the_openai_compatible_endpoint_sends_the_same_events(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    register(http, receiver.url("/v1"), TURN_EVENTS, agentIds=[agent])
    answer = http.post("/v1/chat/completions", json={"model": f"agent:{agent}",
                                                     "messages": [{"role": "user", "content": "Hello from the SDK"}]})
    assert answer.status_code == 200, answer.text
    cid = answer.headers["chatspark-conversation-id"]
    got = receiver.wait_for(3, "/v1")
    settle(receiver, "/v1")
    assert sorted(r.event for r in receiver.received("/v1")) == ["conversation.started", "message.sent", "message.sent"]
    sent = {r.json["data"]["role"]: r.json["data"] for r in got if r.event == "message.sent"}
    assert sent["user"]["content"] == "Hello from the SDK" and sent["user"]["conversationId"] == cid
    assert answer.json()["id"] == "chatcmpl-" + sent["assistant"]["messageId"].removeprefix("msg_")
    assert sent["assistant"]["content"] == answer.json()["choices"][0]["message"]["content"]
