"""Analytics: per agent per UTC day, counted with every stored turn and captured lead, exact across
replicas, a retried write counted once; the period's rules."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import httpx
import pytest

from chatspark.config import StoreConfig
from chatspark.store import Store
from chatspark.store.connection import connect
from chatspark.store.conversations import StoredTurn, utc_day
from chatspark.store.errors import LeaseTaken
from chatspark.store.layout import Layout
from chatspark.store.leases import Lease

NO_ANSWER = "I cannot say."


def new_agent(http: httpx.Client) -> int:
    made = http.post("/api/v1/agents", json={"name": "stats", "model": "local", "botNoAnswer": NO_ANSWER})
    assert made.status_code == 201, made.text
    return int(made.json()["agent"]["id"])


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def chat(http: httpx.Client, agent: int, conversation: str | None = None) -> str:
    body = {"message": "What is the meaning of analytics?"}
    if conversation:
        body["conversationId"] = conversation
    answered = http.post(f"/api/v1/agents/{agent}/chat", json=body)
    assert answered.status_code == 200, answered.text
    return str(answered.json()["conversationId"])


def test_totals_are_exactly_the_turns_conversations_and_leads_across_two_replicas(
    server, start_server, fake_openai, provider_key  # type: ignore[no-untyped-def]
) -> None:
    other = start_server(fake_openai.base_url)  # a second replica on the same prefix
    key = server.key()
    with server.client(key) as one, other.client(key) as two:
        agent = new_agent(one)
        first = chat(one, agent)
        chat(two, agent, first)
        chat(one, agent, first)
        second = chat(two, agent)
        chat(one, agent, second)
        for http in (one, two, one):
            assert http.post(f"/api/v1/agents/{agent}/leads", json={"email": "a@example.com"}).status_code == 201
        # An idempotent turn replayed: one turn stored, counted once.
        idempotency = {"idempotency-key": "analytics-" + secrets.token_hex(4)}
        for http in (two, one):
            replay = http.post(f"/api/v1/agents/{agent}/chat", json={"message": "Again?"}, headers=idempotency)
            assert replay.status_code == 200, replay.text
        # Feedback through either replica: a rating changed or cleared moves the counts.
        listed = one.get(f"/api/v1/agents/{agent}/conversations/{first}/messages").json()["messages"]
        answers = [m["id"] for m in listed if m["role"] == "assistant"]
        base = f"/api/v1/agents/{agent}/conversations/{first}/messages"
        for http, message, rating in ((one, 0, "positive"), (two, 1, "positive"), (one, 1, "negative"),
                                      (two, 2, "negative"), (one, 2, None), (two, 0, "positive")):
            rated = http.post(f"{base}/{answers[message]}/feedback", json={"rating": rating})
            assert rated.status_code == 200, rated.text
        report = one.get(f"/api/v1/agents/{agent}/analytics")
        assert report.status_code == 200, report.text
        body = report.json()
    day = today()
    assert body["totalMessages"] == 12  # 6 turns
    assert body["totalConversations"] == 3
    assert body["totalLeads"] == 3
    assert body["unansweredTurns"] == 6  # the local model without FAQ answers botNoAnswer
    assert body["period"] == {"start": day[:8] + "01", "end": day}
    assert body["positiveFeedback"] == 1 and body["negativeFeedback"] == 1
    assert body["daily"][-1] == {"date": day, "messages": 12, "conversations": 3, "leads": 3, "positiveFeedback": 1,
                                 "negativeFeedback": 1}
    assert len(body["daily"]) == int(day[8:])
    assert sum(d["messages"] for d in body["daily"][:-1]) == 0
    assert list(body["tokensByModel"]) == ["local"] and body["tokensByModel"]["local"] > 0
    assert isinstance(body["p50LatencyMs"], int)


@pytest.mark.anyio
async def test_a_retried_write_is_counted_once(redis_url, key_prefix) -> None:  # type: ignore[no-untyped-def]
    config = StoreConfig(url=redis_url, prefix=f"{key_prefix}-stats")
    store = Store(connect(config), config)
    try:
        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        turn = StoredTurn(id="msg_" + secrets.token_hex(8), user_id="msg_u", query="q", response="r", model="m",
                          created=now, prompt_tokens=3, completion_tokens=4, asked=now - 700)
        cid = secrets.token_urlsafe(24)
        assert (await store.conversations.append(cid, 7, turn, ttl_seconds=60, new=True)).stored
        again = await store.conversations.append(cid, 7, turn, ttl_seconds=60, new=True)  # the write retried
        assert not again.stored
        stats, leads = await store.analytics.daily(7, [utc_day(now)])
        assert stats == [{"messages": 2, "conversations": 1, "tokens:m": 7, "lat:1000": 1}] and leads == [0]
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_turn_refused_by_its_conversation_is_counted_as_sent(redis_url, key_prefix) -> None:  # type: ignore[no-untyped-def]
    """The documented choice: the count is written with the index (the agent's slot) before the
    conversation's slot decides, so a turn fenced off there (its lease lost, an error answered)
    still counts. A store without Cluster could decide in one script; one with it would pay a round trip."""
    config = StoreConfig(url=redis_url, prefix=f"{key_prefix}-fenced")
    store = Store(connect(config), config)
    try:
        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        turn = StoredTurn(id="msg_" + secrets.token_hex(8), user_id="msg_u", query="q", response="r", model="m",
                          created=now)
        cid = secrets.token_urlsafe(24)
        await store.redis.run(lambda r: r.set(Layout(config.prefix).lease(cid), "another-turn"))
        with pytest.raises(LeaseTaken):
            await store.conversations.append(cid, 8, turn, ttl_seconds=60, new=True, lease=Lease("conversation", cid))
        stats, _ = await store.analytics.daily(8, [utc_day(now)])
        assert stats[0]["messages"] == 2
    finally:
        await store.aclose()


def test_period_rules(client: httpx.Client) -> None:
    agent = new_agent(client)
    url = f"/api/v1/agents/{agent}/analytics"
    for query, field in [
        ("end=2026-01-31", "start"),
        ("start=2026-02-30&end=2026-03-01", "start"),
        ("start=2026-01-01&end=26-03-01", "end"),
        ("start=20260101&end=2026-03-01", "start"),
        ("start=2026-03-02&end=2026-03-01", "end"),
        ("start=2025-01-01&end=2026-01-02", "end"),
    ]:
        refused = client.get(f"{url}?{query}")
        assert refused.status_code == 400, query
        error = refused.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and field in error["details"]["fields"], (query, error)
    year = client.get(f"{url}?start=2024-01-01&end=2024-12-31")  # 366 days: the most
    assert year.status_code == 200 and len(year.json()["daily"]) == 366
    assert year.json()["period"] == {"start": "2024-01-01", "end": "2024-12-31"} and year.json()["totalMessages"] == 0
    assert year.json()["p50LatencyMs"] is None
    alone = client.get(f"{url}?start=2026-01-01").json()["period"]
    assert alone == {"start": "2026-01-01", "end": today()}


def test_the_analytics_scope_and_the_agent_are_required(server) -> None:  # type: ignore[no-untyped-def]
    with server.client(server.key()) as admin:
        agent = new_agent(admin)
    with server.client(server.key(scopes=["leads"])) as leads_only:
        refused = leads_only.get(f"/api/v1/agents/{agent}/analytics")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT", refused.text
    with server.client(server.key(scopes=["analytics"], agents=[agent + 1000])) as elsewhere:
        denied = elsewhere.get(f"/api/v1/agents/{agent}/analytics")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "AGENT_ACCESS_DENIED"
    with server.client(server.key(scopes=["analytics"])) as reader:
        assert reader.get(f"/api/v1/agents/{agent}/analytics").status_code == 200
        assert reader.get("/api/v1/agents/999999999/analytics").status_code == 404
