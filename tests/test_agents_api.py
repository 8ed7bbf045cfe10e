"""Agent management: list, read, create (idempotent), change, delete; seeding from config.toml."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from chatspark.store.layout import Layout

AGENTS = "/api/v1/agents"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def create(http, **body):  # type: ignore[no-untyped-def]
    response = http.post(AGENTS, json={"name": f"Agent {secrets.token_hex(3)}", **body})
    assert response.status_code == 201, response.text
    return response.json()["agent"]


def test_create_answers_201_with_the_agent_and_defaults(client):  # type: ignore[no-untyped-def]
    agent = create(client, name="Sales", botPersonality="You sell.", gpt4=True)
    assert isinstance(agent["id"], int)
    assert agent["name"] == "Sales" and agent["botName"] == "Sales"
    assert agent["botPersonality"] == "You sell."
    assert agent["gpt4"] is True and agent["model"] == "gpt-4o"
    assert agent["status"] == "listed" and agent["chatbotType"] == "chatbot"
    assert ISO_MS.match(agent["createdAt"]) and ISO_MS.match(agent["updatedAt"])
    for field in ("botAvatar", "websiteUrl", "botNoAnswer", "welcomeMessage", "primaryColor", "removeBranding", "gaID"):
        assert field in agent
    assert client.get(f"{AGENTS}/{agent['id']}").json() == {"agent": agent}


def test_model_decides_over_gpt4_and_must_be_configured(client):  # type: ignore[no-untyped-def]
    assert create(client, gpt4=False)["model"] == "gpt-4o-mini"
    assert create(client, gpt4=True, model="local")["model"] == "local"
    response = client.post(AGENTS, json={"name": "x", "model": "gpt-9"})
    assert response.status_code == 400
    assert "model" in response.json()["error"]["details"]["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "x", "gpt4": "yes"}, "gpt4"),
     ({"name": "x", "temperature": 3}, "temperature"), ({"name": "x", "colour": "red"}, "colour")],
)
def test_create_validates_fields(client, body, field):  # type: ignore[no-untyped-def]
    response = client.post(AGENTS, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"]


def test_a_created_agent_chats_with_its_instructions_and_model(client, fake_openai):  # type: ignore[no-untyped-def]
    agent = create(client, botPersonality="You are Zed.", gpt4=True)
    response = client.post(f"{AGENTS}/{agent['id']}/chat", json={"message": "hi"})
    assert response.status_code == 200
    assert response.json()["model"] == "gpt-4o"
    assert fake_openai.requests[-1]["messages"][0] == {"role": "system", "content": "You are Zed."}


def test_idempotent_create_replays_and_conflicts(client):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = client.post(AGENTS, json={"name": "Once"}, headers=key)
    again = client.post(AGENTS, json={"name": "Once"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post(AGENTS, json={"name": "Twice"}, headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    without = client.post(AGENTS, json={"name": "Once"})
    assert without.json()["agent"]["id"] != first.json()["agent"]["id"]


def test_idempotency_keys_are_scoped_per_api_key(server):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": "same-for-both"}
    with server.client(server.key()) as one, server.client(server.key()) as two:
        a = one.post(AGENTS, json={"name": "A"}, headers=key).json()["agent"]["id"]
        b = two.post(AGENTS, json={"name": "B"}, headers=key)
    assert b.status_code == 201
    assert b.json()["agent"]["id"] != a


def test_a_created_agent_answers_at_once_even_just_after_its_id_was_looked_up(client):  # type: ignore[no-untyped-def]
    # The replica caches "no such agent" too; the next id, looked up a moment ago, is about to exist.
    before = create(client, model="local")["id"]
    assert client.post(f"{AGENTS}/{before + 1}/chat", json={"message": "hi"}).status_code == 404
    made = create(client, model="local")
    assert made["id"] == before + 1, "another agent took the id: the test did not test anything"
    assert client.post(f"{AGENTS}/{made['id']}/chat", json={"message": "hi"}).status_code == 200
    assert client.get(f"{AGENTS}/{made['id']}/conversations").status_code == 200


def test_patch_changes_only_the_fields_sent(client):  # type: ignore[no-untyped-def]
    agent = create(client, botPersonality="Old.", welcomeMessage="Hi!")
    time.sleep(0.005)
    response = client.patch(f"{AGENTS}/{agent['id']}", json={"botPersonality": "New.", "gpt4": True})
    assert response.status_code == 200
    changed = response.json()["agent"]
    assert changed["botPersonality"] == "New." and changed["model"] == "gpt-4o"
    assert changed["welcomeMessage"] == "Hi!" and changed["name"] == agent["name"]
    assert changed["createdAt"] == agent["createdAt"] and changed["updatedAt"] > agent["updatedAt"]
    assert client.get(f"{AGENTS}/{agent['id']}").json()["agent"] == changed


def test_patch_of_an_unknown_agent_is_agent_not_found(client):  # type: ignore[no-untyped-def]
    response = client.patch(f"{AGENTS}/999999", json={"name": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_every_replica_sees_a_change_within_two_seconds(start_server, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    one, two = start_server(fake_openai.base_url), start_server(fake_openai.base_url)
    key = one.key()
    with one.client(key) as a, two.client(key) as b:
        agent = create(a, botPersonality="Before.")
        assert b.post(f"{AGENTS}/{agent['id']}/chat", json={"message": "hi"}).status_code == 200
        a.patch(f"{AGENTS}/{agent['id']}", json={"botPersonality": "After."})
        time.sleep(1.2)  # the cache holds for 1 s; the contract allows 2 s
        b.post(f"{AGENTS}/{agent['id']}/chat", json={"message": "hi"})
        assert fake_openai.requests[-1]["messages"][0]["content"] == "After."
        assert a.delete(f"{AGENTS}/{agent['id']}").status_code == 204
        time.sleep(1.2)
        gone = b.post(f"{AGENTS}/{agent['id']}/chat", json={"message": "hi"})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_delete_removes_the_agent_and_every_key_of_it(client, server, raw_redis):  # type: ignore[no-untyped-def]
    agent = create(client)
    path = f"{AGENTS}/{agent['id']}"
    cids = [client.post(f"{path}/chat", json={"message": "When are you open?"}).json()["conversationId"] for _ in range(3)]
    mid = client.post(f"{path}/chat", json={"message": "again", "conversationId": cids[0]}).json()["messageId"]
    client.post(f"{path}/conversations/{cids[0]}/messages/{mid}/feedback", json={"rating": "positive"})
    assert client.delete(path).status_code == 204
    assert client.get(path).json()["error"]["code"] == "AGENT_NOT_FOUND"
    assert client.delete(path).status_code == 404
    layout = Layout(server.config.store.prefix)
    left = [
        k.decode() for k in raw_redis.scan_iter(match=f"*{server.config.store.prefix}*", count=1000)
        if any(c in k.decode() for c in cids)
        or k.decode() in (layout.agent(agent["id"]), layout.agent_conversations(agent["id"]),
                          layout.agent_conversation_expiry(agent["id"]))
    ]
    assert left == []
    assert raw_redis.zscore(layout.agent_index(), agent["id"]) is None


def test_list_shows_newest_first_and_pages(client):  # type: ignore[no-untyped-def]
    made = [create(client)["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(AGENTS, params=params).json()
        assert len(page["agents"]) <= 2
        seen += [a["id"] for a in page["agents"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in made] == sorted(made, reverse=True)
    assert {1, 2, 3} <= set(seen)
    assert "botPersonality" not in client.get(AGENTS).json()["agents"][0]


def test_a_restricted_key_sees_only_its_agents(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1, 3])) as http:
        listed = {a["id"] for a in http.get(AGENTS, params={"limit": 100}).json()["agents"]}
        assert listed <= {1, 3} and listed == {1, 3}
        denied = http.get(f"{AGENTS}/2")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "AGENT_ACCESS_DENIED"
        assert http.post(AGENTS, json={"name": "x"}).json()["error"]["code"] == "AGENT_ACCESS_DENIED"


def test_config_seeds_once_and_never_clobbers_api_edits(start_server, key_prefix, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    prefix = f"{key_prefix}-seed"  # its own: this test edits and deletes the seeded agents
    first = start_server(fake_openai.base_url, prefix=prefix)
    key = first.key()
    with first.client(key) as http:
        assert http.get(f"{AGENTS}/1").json()["agent"]["name"] == "Support Bot"
        http.patch(f"{AGENTS}/1", json={"name": "Renamed"})
        http.delete(f"{AGENTS}/2")
        created = create(http)
    assert created["id"] > 3  # ids handed out by the API never collide with configured ones
    second = start_server(fake_openai.base_url, prefix=prefix)  # a restart, or another replica
    with second.client(key) as http:
        assert http.get(f"{AGENTS}/1").json()["agent"]["name"] == "Renamed"
        assert http.get(f"{AGENTS}/2").status_code == 404
        assert http.get(f"{AGENTS}/3").status_code == 200


@pytest.mark.parametrize("field", ["botAvatar", "websiteUrl"])
@pytest.mark.parametrize("value", ["https://[x/a.png", "javascript:alert(1)", "not a url", "http://"])
def test_url_fields_take_an_http_url_or_nothing(client, field, value):  # type: ignore[no-untyped-def]
    agent = create(client)
    refused = client.patch(f"{AGENTS}/{agent['id']}", json={field: value})
    assert refused.status_code == 400 and field in refused.json()["error"]["details"]["fields"]
    for good in ("https://cdn.example.com/bot.png?v=2", ""):
        assert client.patch(f"{AGENTS}/{agent['id']}", json={field: good}).json()["agent"][field] == good
