"""Reading back an agent's conversations: list, read, messages, delete, feedback, and paging."""

from __future__ import annotations

import secrets

import pytest

from chatspark.store.layout import Layout

AGENTS = "/api/v1/agents"


@pytest.fixture
def agent(client):  # type: ignore[no-untyped-def]
    """A fresh agent on the offline model, so lists start empty and nothing is shared."""
    return client.post(AGENTS, json={"name": "Reader", "model": "local"}).json()["agent"]["id"]


def say(http, agent, message, cid=None):  # type: ignore[no-untyped-def]
    body = {"message": message, **({"conversationId": cid} if cid else {})}
    response = http.post(f"{AGENTS}/{agent}/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def walk(http, path, key, limit):  # type: ignore[no-untyped-def]
    """Every item of a paginated list, and the number of pages."""
    items, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = http.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page[key]) <= limit
        items += page[key]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            return items, pages


def test_a_conversation_reads_back_oldest_first_with_ids_from_chat(client, agent):  # type: ignore[no-untyped-def]
    first = say(client, agent, "hello")
    second = say(client, agent, "When are you open?", first["conversationId"])
    cid = first["conversationId"]
    response = client.get(f"{AGENTS}/{agent}/conversations/{cid}")
    assert response.status_code == 200
    conversation = response.json()["conversation"]
    assert conversation["id"] == cid
    assert conversation["expiresAt"] == second["expiresAt"]
    assert [m["messageId"] for m in conversation["messages"]] == [first["messageId"], second["messageId"]]
    assert conversation["messages"][1] == {
        "query": "When are you open?", "response": second["text"], "createdAt": conversation["messages"][1]["createdAt"],
        "messageId": second["messageId"], "model": "local", "rating": None, "sources": [],
    }


def test_messages_are_one_row_each_and_page_oldest_first(client, agent):  # type: ignore[no-untyped-def]
    cid = say(client, agent, "m0")["conversationId"]
    answers = [say(client, agent, f"m{i}", cid) for i in range(1, 5)]
    rows, pages = walk(client, f"{AGENTS}/{agent}/conversations/{cid}/messages", "messages", 3)
    assert pages == 4  # 10 rows by 3
    assert [r["role"] for r in rows] == ["user", "assistant"] * 5
    assert [r["content"] for r in rows if r["role"] == "user"] == [f"m{i}" for i in range(5)]
    assert [r["id"] for r in rows if r["role"] == "assistant"][1:] == [a["messageId"] for a in answers]
    assert all(r["model"] is None for r in rows if r["role"] == "user")
    assert all(r["model"] == "local" for r in rows if r["role"] == "assistant")
    assert len({r["id"] for r in rows}) == 10


def test_message_pages_stay_stable_while_turns_arrive(client, agent):  # type: ignore[no-untyped-def]
    cid = say(client, agent, "m0")["conversationId"]
    say(client, agent, "m1", cid)
    path = f"{AGENTS}/{agent}/conversations/{cid}/messages"
    page = client.get(path, params={"limit": 3}).json()
    say(client, agent, "m2", cid)
    rest = client.get(path, params={"limit": 100, "cursor": page["nextCursor"]}).json()
    contents = [r["content"] for r in page["messages"] + rest["messages"] if r["role"] == "user"]
    assert contents == ["m0", "m1", "m2"]
    assert rest["nextCursor"] is None


def test_the_conversation_list_shows_counts_and_times(client, agent):  # type: ignore[no-untyped-def]
    one = say(client, agent, "a")
    say(client, agent, "b", one["conversationId"])
    two = say(client, agent, "c")
    listed = client.get(f"{AGENTS}/{agent}/conversations").json()
    assert listed["nextCursor"] is None
    assert [c["id"] for c in listed["conversations"]] == [two["conversationId"], one["conversationId"]]
    row = listed["conversations"][1]
    assert row["messageCount"] == 4
    assert row["expiresAt"] > row["lastMessageAt"] >= row["createdAt"]


def test_paging_250_conversations_with_inserts_and_expiries_sees_each_live_one_once(client, server, raw_redis, agent):  # type: ignore[no-untyped-def]
    created = [say(client, agent, f"c{i}")["conversationId"] for i in range(250)]
    layout = Layout(server.config.store.prefix)
    path = f"{AGENTS}/{agent}/conversations"
    seen: list[str] = []
    expired: set[str] = set()
    added: list[str] = []
    cursor, pages = None, 0
    while True:
        params = {"limit": 17, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=params).json()
        seen += [c["id"] for c in page["conversations"]]
        cursor, pages = page["nextCursor"], pages + 1
        if cursor is None:
            break
        # Meanwhile: new conversations arrive, and some not yet listed expire.
        added.append(say(client, agent, f"new{pages}")["conversationId"])
        for victim in [c for c in created if c not in seen and c not in expired][-3:]:
            raw_redis.delete(*layout.conversation_keys(victim))
            expired.add(victim)
    assert len(seen) == len(set(seen)), "a conversation was listed twice"
    assert set(seen) == (set(created) - expired) | (set(seen) & set(added))
    assert set(created) - expired <= set(seen), "a live conversation was skipped"
    assert not expired & set(seen)
    assert pages >= 10


def test_a_tampered_or_foreign_cursor_is_a_validation_error(client, agent):  # type: ignore[no-untyped-def]
    for _ in range(3):
        say(client, agent, "x")
    path = f"{AGENTS}/{agent}/conversations"
    cursor = client.get(path, params={"limit": 1}).json()["nextCursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    other = client.post(AGENTS, json={"name": "Other", "model": "local"}).json()["agent"]["id"]
    cases = [
        (path, tampered),
        (path, "not-a-cursor"),
        (path, "x" * 2000),
        (f"{AGENTS}/{other}/conversations", cursor),
        (AGENTS, cursor),
    ]
    for target, bad in cases:
        response = client.get(target, params={"cursor": bad})
        assert response.status_code == 400, (target, bad)
        assert "cursor" in response.json()["error"]["details"]["fields"]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
def test_limit_outside_1_to_100_is_a_validation_error(client, agent, limit):  # type: ignore[no-untyped-def]
    response = client.get(f"{AGENTS}/{agent}/conversations", params={"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["details"]["fields"]


def test_delete_conversation_removes_it_everywhere(client, server, raw_redis, agent):  # type: ignore[no-untyped-def]
    cid = say(client, agent, "bye")["conversationId"]
    path = f"{AGENTS}/{agent}/conversations/{cid}"
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert client.delete(path).status_code == 404
    assert say(client, agent, "x")["conversationId"] != cid
    assert client.post(f"{AGENTS}/{agent}/chat", json={"message": "again", "conversationId": cid}).status_code == 404
    layout = Layout(server.config.store.prefix)
    assert raw_redis.exists(*layout.conversation_keys(cid)) == 0
    assert raw_redis.zscore(layout.agent_conversations(agent), cid) is None


def test_a_conversation_is_reachable_only_under_its_own_agent(client, agent):  # type: ignore[no-untyped-def]
    answer = say(client, agent, "mine")
    cid, mid = answer["conversationId"], answer["messageId"]
    for path in (f"{AGENTS}/1/conversations/{cid}", f"{AGENTS}/1/conversations/{cid}/messages"):
        assert client.get(path).json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert client.delete(f"{AGENTS}/1/conversations/{cid}").status_code == 404
    rated = client.post(f"{AGENTS}/1/conversations/{cid}/messages/{mid}/feedback", json={"rating": "positive"})
    assert rated.status_code == 404
    assert cid not in [c["id"] for c in client.get(f"{AGENTS}/1/conversations", params={"limit": 100}).json()["conversations"]]
    assert client.get(f"{AGENTS}/{agent}/conversations/{cid}").status_code == 200


def test_feedback_rates_answers_and_null_clears(client, agent):  # type: ignore[no-untyped-def]
    answer = say(client, agent, "rate me")
    cid, mid = answer["conversationId"], answer["messageId"]
    path = f"{AGENTS}/{agent}/conversations/{cid}/messages/{mid}/feedback"
    response = client.post(path, json={"rating": "negative"})
    assert response.status_code == 200
    assert response.json() == {"messageId": mid, "rating": "negative"}
    conversation = client.get(f"{AGENTS}/{agent}/conversations/{cid}").json()["conversation"]
    assert conversation["messages"][0]["rating"] == "negative"
    rows = client.get(f"{AGENTS}/{agent}/conversations/{cid}/messages").json()["messages"]
    assert [r["rating"] for r in rows] == [None, "negative"]
    assert client.post(path, json={"rating": None}).json() == {"messageId": mid, "rating": None}
    assert client.get(f"{AGENTS}/{agent}/conversations/{cid}").json()["conversation"]["messages"][0]["rating"] is None


def test_feedback_ttl_follows_the_conversation(client, server, raw_redis, agent):  # type: ignore[no-untyped-def]
    answer = say(client, agent, "rate me")
    cid = answer["conversationId"]
    client.post(f"{AGENTS}/{agent}/conversations/{cid}/messages/{answer['messageId']}/feedback", json={"rating": "positive"})
    layout = Layout(server.config.store.prefix)
    assert 0 < raw_redis.ttl(layout.ratings(cid)) <= raw_redis.ttl(layout.conversation(cid)[0]) + 1
    say(client, agent, "again", cid)
    assert raw_redis.ttl(layout.ratings(cid)) > 7 * 24 * 3600 - 60


def test_feedback_errors(client, agent):  # type: ignore[no-untyped-def]
    cid = say(client, agent, "hello")["conversationId"]
    user_id = client.get(f"{AGENTS}/{agent}/conversations/{cid}/messages").json()["messages"][0]["id"]
    base = f"{AGENTS}/{agent}/conversations/{cid}/messages"
    user = client.post(f"{base}/{user_id}/feedback", json={"rating": "positive"})
    assert user.status_code == 400 and user.json()["error"]["code"] == "VALIDATION_ERROR"
    unknown = client.post(f"{base}/msg_{secrets.token_hex(8)}/feedback", json={"rating": "positive"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    answer_id = client.get(f"{AGENTS}/{agent}/conversations/{cid}/messages").json()["messages"][1]["id"]
    for body in ({"rating": "great"}, {}, {"rating": "positive", "extra": 1}):
        bad = client.post(f"{base}/{answer_id}/feedback", json=body)
        assert bad.status_code == 400, body
    great = client.post(f"{base}/{answer_id}/feedback", json={"rating": "great"}).json()["error"]
    assert great["details"]["fields"]["rating"] == ["Invalid enum value 'great' (one of: 'negative', 'positive')"]


def test_unknown_agent_or_conversation(client, agent):  # type: ignore[no-untyped-def]
    assert client.get(f"{AGENTS}/999999/conversations").json()["error"]["code"] == "AGENT_NOT_FOUND"
    for cid in ("A" * 32, "short", "{tag}"):
        response = client.get(f"{AGENTS}/{agent}/conversations/{cid}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
