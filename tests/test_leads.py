"""Leads over the API: captured, listed newest first, erased, owned by their agent, counted per day."""

from __future__ import annotations

import pytest

AGENTS = "/api/v1/agents"


@pytest.fixture
def agent(client) -> str:  # type: ignore[no-untyped-def]
    made = client.post(AGENTS, json={"name": "leads", "model": "local"})
    assert made.status_code == 201, made.text
    return f"{AGENTS}/{made.json()['agent']['id']}"


def test_a_lead_is_created_listed_and_deleted(client, agent):  # type: ignore[no-untyped-def]
    created = client.post(f"{agent}/leads", json={"name": "Ann", "email": "ann@example.com", "companyName": "Acme"})
    assert created.status_code == 201, created.text
    lead = created.json()["lead"]
    assert lead["id"].startswith("lead_") and lead["email"] == "ann@example.com" and lead["phone"] is None
    listed = client.get(f"{agent}/leads").json()
    assert listed == {"leads": [lead], "nextCursor": None}
    assert client.delete(f"{agent}/leads/{lead['id']}").status_code == 204
    assert client.get(f"{agent}/leads").json()["leads"] == []
    again = client.delete(f"{agent}/leads/{lead['id']}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
