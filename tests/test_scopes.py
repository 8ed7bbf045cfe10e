"""The scope × endpoint matrix, and keys restricted to some agents."""

from __future__ import annotations

import pytest

from chatspark.apikeys import SCOPES

AGENTS = "/api/v1/agents"
CID = "A" * 32
MID = "msg_" + "b" * 22

# (method, path, body, the one scope it needs); {agent} is filled in per test.
ENDPOINTS = [
    ("POST", "/api/v1/agents/{agent}/chat", {"message": "hi"}, "chat"),
    ("GET", AGENTS, None, "agents:read"),
    ("GET", "/api/v1/agents/{agent}", None, "agents:read"),
    ("POST", AGENTS, {"name": "made by the matrix", "model": "local"}, "agents:write"),
    ("PATCH", "/api/v1/agents/{agent}", {"welcomeMessage": "hi"}, "agents:write"),
    ("DELETE", "/api/v1/agents/{agent}", None, "agents:write"),
    ("GET", "/api/v1/agents/{agent}/conversations", None, "conversations:read"),
    ("GET", f"/api/v1/agents/{{agent}}/conversations/{CID}", None, "conversations:read"),
    ("GET", f"/api/v1/agents/{{agent}}/conversations/{CID}/messages", None, "conversations:read"),
    ("DELETE", f"/api/v1/agents/{{agent}}/conversations/{CID}", None, "conversations:write"),
    ("POST", f"/api/v1/agents/{{agent}}/conversations/{CID}/messages/{MID}/feedback", {"rating": "positive"}, "feedback"),
    ("GET", "/api/v1/agents/{agent}/leads", None, "leads"),
    ("POST", "/api/v1/agents/{agent}/leads", {"email": "matrix@example.com"}, "leads"),
    ("DELETE", "/api/v1/agents/{agent}/leads/lead_unknown", None, "leads"),
]
IDS = [f"{m} {p.replace('/api/v1', '')}" for m, p, _, _ in ENDPOINTS]


@pytest.fixture
def own_agent(client):  # type: ignore[no-untyped-def]
    return client.post(AGENTS, json={"name": "Matrix", "model": "local"}).json()["agent"]["id"]


def call(http, method, path, body, agent):  # type: ignore[no-untyped-def]
    return http.request(method, path.format(agent=agent), json=body)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_each_endpoint_needs_its_scope(server, own_agent, method, path, body, scope):  # type: ignore[no-untyped-def]
    without = [s for s in SCOPES if s != scope]
    with server.client(server.key(scopes=without)) as http:
        response = call(http, method, path, body, own_agent)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT"
    assert scope in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_its_scope_alone_is_enough(server, own_agent, method, path, body, scope):  # type: ignore[no-untyped-def]
    with server.client(server.key(scopes=[scope])) as http:
        response = call(http, method, path, body, own_agent)
    # Past auth: the answer is the endpoint's own (the conversation in the path does not exist).
    assert response.status_code in (200, 201, 204, 404), response.text
    if response.status_code == 404:
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize(("method", "path", "body", "scope"), [e for e in ENDPOINTS if "{agent}" in e[1]],
                         ids=[i for e, i in zip(ENDPOINTS, IDS) if "{agent}" in e[1]])
def test_a_key_restricted_to_other_agents_is_denied(server, own_agent, method, path, body, scope):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1])) as http:
        response = call(http, method, path, body, own_agent)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AGENT_ACCESS_DENIED"


def test_scope_is_checked_before_agent_access_and_existence(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(scopes=["chat"], agents=[1])) as http:
        response = http.get(f"{AGENTS}/999999/conversations")
    assert response.json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT"
