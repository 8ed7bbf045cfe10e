"""The service on a Redis Cluster: every multi-key script stays in one slot, scripts never ride in a
cluster pipeline, and the core flows work end to end. A private 3-node cluster, started here."""

from __future__ import annotations

import re

import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

AGENTS = "/api/v1/agents"


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed to start a private cluster")
    workdir = tempfile.mkdtemp(prefix="chatspark-cluster-")
    ports = _cluster_ports(3)
    processes = [
        subprocess.Popen(
            [server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file",
             f"nodes-{p}.conf", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        for p in ports:
            _wait(lambda p=p: redis.Redis(port=p).ping())
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )
        _wait(lambda: redis.Redis(port=ports[0]).cluster("info")["cluster_state"] == "ok")
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free and valid too (ephemeral ports are not)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        if port not in ports:
            ports.append(port)
    return ports


def _wait(check, seconds: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, "the private cluster did not come up"
        time.sleep(0.1)


@pytest.fixture
def cluster_server(start_server, cluster_url, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    return start_server(fake_openai.base_url, store_url=cluster_url, store={"cluster": True})


def test_turns_streams_idempotency_and_limits_on_a_cluster(cluster_server):  # type: ignore[no-untyped-def]
    with cluster_server.client(cluster_server.key("test", monthly_cap=10, rate_limit=100)) as http:
        first = http.post(f"{AGENTS}/2/chat", json={"message": "hi"})
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-remaining"] == "99"
        cid = first.json()["conversationId"]
        second = http.post(f"{AGENTS}/2/chat", json={"message": "again", "conversationId": cid})
        assert second.json()["context"]["turnsIncluded"] == 1
        key = {"Idempotency-Key": secrets.token_hex(8)}
        stream = http.post(f"{AGENTS}/1/chat", json={"message": "When are you open?", "stream": True}, headers=key)
        assert '"done":true' in stream.text
        replay = http.post(f"{AGENTS}/1/chat", json={"message": "When are you open?", "stream": True}, headers=key)
        assert replay.headers["idempotent-replayed"] == "true"
        rows = http.get(f"{AGENTS}/2/conversations/{cid}/messages").json()["messages"]
        assert [r["content"] for r in rows if r["role"] == "user"] == ["hi", "again"]
        rated = http.post(f"{AGENTS}/2/conversations/{cid}/messages/{rows[1]['id']}/feedback", json={"rating": "positive"})
        assert rated.status_code == 200
        assert cid in [c["id"] for c in http.get(f"{AGENTS}/2/conversations").json()["conversations"]]


def test_agents_are_managed_on_a_cluster(cluster_server):  # type: ignore[no-untyped-def]
    with cluster_server.client(cluster_server.key()) as http:
        plain = http.post(AGENTS, json={"name": "Plain", "model": "local"})
        assert plain.status_code == 201, plain.text
        key = {"Idempotency-Key": secrets.token_hex(8)}
        once = http.post(AGENTS, json={"name": "Once", "model": "local"}, headers=key)
        again = http.post(AGENTS, json={"name": "Once", "model": "local"}, headers=key)
        assert once.json() == again.json()
        agent = plain.json()["agent"]["id"]
        cid = http.post(f"{AGENTS}/{agent}/chat", json={"message": "hi"}).json()["conversationId"]
        assert http.patch(f"{AGENTS}/{agent}", json={"welcomeMessage": "hello"}).status_code == 200
        assert http.delete(f"{AGENTS}/{agent}/conversations/{cid}").status_code == 204
        assert http.delete(f"{AGENTS}/{agent}").status_code == 204
        assert http.get(f"{AGENTS}/{agent}").status_code == 404


def test_leads_on_a_cluster(cluster_server):  # type: ignore[no-untyped-def]
    with cluster_server.client(cluster_server.key()) as http:
        agent = http.post(AGENTS, json={"name": "Leads", "model": "local"}).json()["agent"]["id"]
        cid = http.post(f"{AGENTS}/{agent}/chat", json={"message": "hi"}).json()["conversationId"]
        key = {"Idempotency-Key": secrets.token_hex(8)}
        body = {"email": "ann@example.com", "conversationId": cid}
        first = http.post(f"{AGENTS}/{agent}/leads", json=body, headers=key)
        assert first.status_code == 201, first.text
        again = http.post(f"{AGENTS}/{agent}/leads", json=body, headers=key)
        assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
        second = http.post(f"{AGENTS}/{agent}/leads", json={"phone": "+1 555 0100"})
        page = http.get(f"{AGENTS}/{agent}/leads", params={"limit": 1}).json()
        assert [lead["id"] for lead in page["leads"]] == [second.json()["lead"]["id"]]
        rest = http.get(f"{AGENTS}/{agent}/leads", params={"limit": 1, "cursor": page["nextCursor"]}).json()
        assert [lead["id"] for lead in rest["leads"]] == [first.json()["lead"]["id"]]
        assert http.delete(f"{AGENTS}/{agent}/leads/{first.json()['lead']['id']}").status_code == 204
        assert http.delete(f"{AGENTS}/{agent}").status_code == 204


def test_the_widget_on_a_cluster(cluster_server):  # type: ignore[no-untyped-def]
    """Visitor and address limits (two logs in two slots), the agent's widget cap, a widget turn
    streamed and continued, its messages and a lead."""
    origin = {"origin": "https://shop.example"}
    with cluster_server.client(cluster_server.key()) as http:
        agent = http.post(AGENTS, json={"name": "Widget", "model": "local", "allowedOrigins": [origin["origin"]],
                                        "widgetMonthlyCap": 3}).json()["agent"]["id"]
    with cluster_server.client() as browser:
        base = f"/api/v1/widget/{agent}"
        session = browser.post(f"{base}/session", json={}, headers=origin)
        assert session.status_code == 200, session.text
        visitor = {**origin, "chatspark-visitor": session.json()["visitorToken"]}
        first = browser.post(f"{base}/chat", json={"message": "hi", "stream": True}, headers=visitor)
        assert '"done":true' in first.text and first.headers["access-control-allow-origin"] == origin["origin"]
        cid = first.text.split('"conversationId":"')[1].split('"')[0]
        second = browser.post(f"{base}/chat", json={"message": "again", "conversationId": cid}, headers=visitor)
        assert second.status_code == 200, second.text
        rows = browser.get(f"{base}/conversations/{cid}/messages", headers=visitor).json()["messages"]
        assert [r["content"] for r in rows if r["role"] == "user"] == ["hi", "again"]
        lead = browser.post(f"{base}/leads", json={"email": "ann@example.com", "conversationId": cid}, headers=visitor)
        assert lead.status_code == 201, lead.text
        assert browser.post(f"{base}/chat", json={"message": "three"}, headers=visitor).status_code == 200
        capped = browser.post(f"{base}/chat", json={"message": "four"}, headers=visitor)
        assert capped.status_code == 402 and capped.json()["error"]["code"] == "CREDITS_EXHAUSTED"
def test_webhook_events_are_delivered_on_a_cluster(start_server, cluster_url, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    """The events' outboxes live in their producers' slots (the agent's, its knowledge's, each
    conversation's: one outbox per slot) and reach the webhooks' slot through the relay."""
    from redis.cluster import RedisCluster

    from chatspark.store.layout import Layout
    from tests.test_webhooks import Receiver, verify

    server = start_server(fake_openai.base_url, store_url=cluster_url, store={"cluster": True},
                          webhooks={"allow_private_urls": True, "retry_seconds": [0.3], "expired_sweep_seconds": 0.3})
    receiver = Receiver().start()
    events = ["agent.updated", "training.completed", "message.sent", "conversation.started", "conversation.ended",
              "lead.captured"]
    try:
        with server.client(server.key("test")) as http:
            agent = http.post(AGENTS, json={"name": "Hooked", "model": "local"}).json()["agent"]["id"]
            made = http.post("/api/v1/webhooks", json={"name": "c", "url": receiver.plan("/c", 500, 200),
                                                       "events": events, "agentIds": [agent]})
            assert made.status_code == 201, made.text
            assert http.patch(f"{AGENTS}/{agent}", json={"welcomeMessage": "hello"}).status_code == 200
            added = http.post(f"{AGENTS}/{agent}/training", json={"source": "s", "type": "text", "data": "# A\nB."})
            assert added.status_code == 201
            answers = [http.post(f"{AGENTS}/{agent}/chat", json={"message": f"hi {n}"}) for n in range(4)]
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            cids = [a.json()["conversationId"] for a in answers]
            assert http.delete(f"{AGENTS}/{agent}/conversations/{cids[0]}").status_code == 204
            lead = http.post(f"{AGENTS}/{agent}/leads", json={"email": "ann@example.com", "conversationId": cids[1]})
            assert lead.status_code == 201, lead.text
            # 2 + 4 × (started + 2 messages) + 1 ended + 1 lead; one of them answered 500 first, then retried
            received = receiver.wait_for(17, "/c", timeout=60)
        for request in received:
            verify(request, made.json()["secret"])
        assert {r.event for r in received} == set(events)
        assert len({r.delivery for r in received}) == 16
        sent = [r.json["data"] for r in received if r.event == "message.sent"]
        assert {m["conversationId"] for m in sent} == set(cids)
        # One outbox per slot (named for its slot, not for a producer key), each conversation's among them.
        layout = Layout(server.config.store.prefix)
        registry = {o.decode() for o in RedisCluster.from_url(cluster_url).zrange(layout.webhook_outboxes()[0], 0, -1)}
        assert {layout.webhook_outbox(layout.conversation(c)[0]) for c in cids} <= registry
        assert all(re.fullmatch(r"\{%s:outbox:\d+\}:outbox" % re.escape(layout.prefix), o) for o in registry), registry
    finally:
        receiver.stop()
