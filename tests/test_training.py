"""Training sources over the API, and answers grounded in them with citations (agent 1 answers
offline, extractively, so every assertion here is on real retrieval through the real store)."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from chatspark.store.layout import Layout

NO_ANSWER = "Sorry, I don't know that yet."
TEXT = """# Warranty
Every Example Hub comes with a two-year warranty. Broken units are replaced within five business days.

# Returns
Unopened hardware can be sent back within 60 days for a full refund, shipping paid by us."""


@pytest.fixture
def agent(client) -> str:  # type: ignore[no-untyped-def]
    """A fresh offline agent per test: its knowledge is only what the test adds."""
    made = client.post("/api/v1/agents", json={"name": "kb", "model": "local", "botNoAnswer": NO_ANSWER})
    assert made.status_code == 201, made.text
    return f"/api/v1/agents/{made.json()['agent']['id']}"


def wait_until_done(http: httpx.Client, agent: str, training_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        source = http.get(f"{agent}/training/{training_id}").json()["source"]
        if source["status"] in ("completed", "failed"):
            return source
        time.sleep(0.1)
    raise AssertionError(f"source {training_id} still {source['status']} after {timeout}s")


def ask(http: httpx.Client, agent: str, message: str) -> dict:
    answer = http.post(f"{agent}/chat", json={"message": message})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def slug() -> str:
    return f"kb-{secrets.token_hex(4)}"


def test_a_text_source_trains_and_answers_with_its_citation(client, agent, slug):  # type: ignore[no-untyped-def]
    created = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT})
    assert created.status_code == 201, created.text
    source = created.json()["source"]
    assert source["status"] == "pending" and source["source"] == slug and source["type"] == "text"
    assert source["trainingUrl"] is None and source["dataCount"] is None and source["error"] is None
    done = wait_until_done(client, agent, source["id"])
    assert done["status"] == "completed" and done["dataCount"] >= 1
    answer = ask(client, agent, "How long is the warranty on the hub?")
    assert "two-year warranty" in answer["text"]
    cited = [s for s in answer["sources"] if s["trainingId"] == source["id"]]
    assert cited and cited[0]["source"] == slug and 0 < cited[0]["score"] <= 1
    # The citation is stored with the turn and read back.
    exchange = client.get(f"{agent}/conversations/{answer['conversationId']}").json()["conversation"]["messages"][0]
    assert exchange["sources"] == answer["sources"]
    rows = client.get(f"{agent}/conversations/{answer['conversationId']}/messages").json()["messages"]
    assert rows[0]["sources"] == [] and rows[1]["sources"] == answer["sources"]


def test_agent_1_answers_from_its_seeded_help_center_and_its_faq_first(client):  # type: ignore[no-untyped-def]
    agent = "/api/v1/agents/1"
    assert ask(client, agent, "When are you open?")["text"] == "We are open Monday to Friday, 9:00 to 17:00 CET."
    deadline = time.monotonic() + 60
    while True:
        answer = ask(client, agent, "How do I reset my password?")
        if answer["sources"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the help center is indexed in the background at start
    assert "reset link" in answer["text"] and answer["sources"][0]["source"] == "help-center"


def test_an_unrelated_question_gets_the_no_answer_and_no_sources(client, agent, slug):  # type: ignore[no-untyped-def]
    created = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT}).json()["source"]
    wait_until_done(client, agent, created["id"])
    answer = ask(client, agent, "What is the boiling point of mercury on Jupiter?")
    assert answer["text"] == NO_ANSWER and answer["sources"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "text"}, "data"),
        ({"type": "text", "data": "x", "url": "https://example.com"}, "url"),
        ({"type": "page"}, "url"),
        ({"type": "page", "url": "https://example.com", "data": "x"}, "data"),
        ({"type": "website", "url": "ftp://example.com/"}, "url"),
        ({"type": "page", "url": "http://127.0.0.1/"}, "url"),
        ({"type": "page", "url": "http://[::1]/"}, "url"),
        ({"type": "video", "url": "https://example.com"}, "type"),
    ],
)
def test_invalid_sources_name_the_field(client, agent, slug, body, field):  # type: ignore[no-untyped-def]
    refused = client.post(f"{agent}/training", json={"source": slug, **body})
    assert refused.status_code == 400, refused.text
    assert field in refused.json()["error"]["details"]["fields"]


def test_retraining_swaps_content_without_a_gap(client, agent, slug):  # type: ignore[no-untyped-def]
    first = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT}).json()["source"]
    wait_until_done(client, agent, first["id"])
    newer = TEXT.replace("two-year warranty", "three-year warranty")
    again = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": newer})
    assert again.status_code == 200 and again.json()["source"]["id"] == first["id"]
    seen = set()
    while client.get(f"{agent}/training/{first['id']}").json()["source"]["status"] != "completed":
        answer = ask(client, agent, "How long is the warranty on the hub?")
        assert any(s["trainingId"] == first["id"] for s in answer["sources"]), "a turn answered without the source"
        seen.add("three-year" in answer["text"])
    assert "three-year warranty" in ask(client, agent, "How long is the warranty on the hub?")["text"]


def test_deleting_a_source_stops_citing_it_and_removes_its_keys(client, agent, server, raw_redis, slug):  # type: ignore[no-untyped-def]
    created = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT}).json()["source"]
    wait_until_done(client, agent, created["id"])
    assert any(s["trainingId"] == created["id"] for s in ask(client, agent, "hub warranty years?")["sources"])
    assert client.delete(f"{agent}/training/{created['id']}").status_code == 204
    assert not any(s["trainingId"] == created["id"] for s in ask(client, agent, "hub warranty years?")["sources"])
    assert client.get(f"{agent}/training/{created['id']}").status_code == 404
    layout, agent_id = Layout(server.config.store.prefix), int(agent.rsplit("/", 1)[1])
    owned = [layout.knowledge_source(agent_id, created["id"]), layout.knowledge_data(agent_id, created["id"]),
             layout.knowledge_chunks(agent_id, created["id"], 0).removesuffix(":0") + ":*"]
    assert [k for pattern in owned for k in raw_redis.scan_iter(match=pattern)] == []


def test_an_idempotent_add_replays(client, agent, slug):  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    body = {"source": slug, "type": "text", "data": TEXT}
    first = client.post(f"{agent}/training", json=body, headers=headers)
    again = client.post(f"{agent}/training", json=body, headers=headers)
    assert again.json()["source"]["id"] == first.json()["source"]["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post(f"{agent}/training", json={**body, "data": "other"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


def test_sources_list_newest_first_in_pages(client, agent, slug):  # type: ignore[no-untyped-def]
    ids = [
        client.post(f"{agent}/training", json={"source": f"{slug}-{n}", "type": "text", "data": TEXT}).json()["source"]["id"]
        for n in range(3)
    ]
    seen, cursor = [], None
    while True:
        page = client.get(f"{agent}/training", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [s["id"] for s in page["sources"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in ids] == sorted(ids, reverse=True)


def test_the_training_scope_guards_the_endpoints(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(scopes=["chat"])) as http:
        assert http.get("/api/v1/agents/1/training").json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT"
    with server.client(server.key(scopes=["training"])) as http:
        assert http.get("/api/v1/agents/1/training").status_code == 200


def test_a_source_trained_on_one_replica_answers_on_another_and_its_delete_is_seen(
    start_server, fake_openai, provider_key, slug
):  # type: ignore[no-untyped-def]
    a, b = start_server(fake_openai.base_url), start_server(fake_openai.base_url)
    key = a.key()
    with a.client(key) as on_a, b.client(key) as on_b:
        made = on_a.post("/api/v1/agents", json={"name": "kb", "model": "local", "botNoAnswer": NO_ANSWER})
        agent = f"/api/v1/agents/{made.json()['agent']['id']}"
        created = on_a.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT}).json()["source"]
        wait_until_done(on_a, agent, created["id"])
        assert any(s["trainingId"] == created["id"] for s in ask(on_b, agent, "How long is the hub warranty?")["sources"])
        assert on_a.delete(f"{agent}/training/{created['id']}").status_code == 204
        assert not any(s["trainingId"] == created["id"] for s in ask(on_b, agent, "How long is the hub warranty?")["sources"])


def test_deleting_the_agent_deletes_its_knowledge(client, agent, server, raw_redis, slug):  # type: ignore[no-untyped-def]
    created = client.post(f"{agent}/training", json={"source": slug, "type": "text", "data": TEXT}).json()["source"]
    wait_until_done(client, agent, created["id"])
    layout, agent_id = Layout(server.config.store.prefix), int(agent.rsplit("/", 1)[1])
    tag = layout.knowledge_sources(agent_id).removesuffix(":sources")
    assert list(raw_redis.scan_iter(match=tag + ":*"))
    assert client.delete(agent).status_code == 204
    assert list(raw_redis.scan_iter(match=tag + ":*")) == []
