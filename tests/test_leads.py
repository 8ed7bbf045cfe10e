"""Leads over the API: captured and validated, listed newest first, erased, owned by their agent,
counted per UTC day; and `Leads.create` as the widget calls it, validating what it is handed."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
import redis

from chatspark import errors
from chatspark.agent_registry import AgentRegistry
from chatspark.apikeys import SCOPES
from chatspark.leads import LeadFields, Leads, utc_day
from chatspark.pagination import Cursors, PageQuery
from chatspark.store import Store
from chatspark.store.connection import connect
from chatspark.store.layout import Layout
from chatspark.store.leads import LeadRecord
from tests.conftest import InProcessServer

AGENTS = "/api/v1/agents"


@pytest.fixture
def agent(client: httpx.Client) -> str:
    """A fresh offline agent per test: its leads are only what the test captures."""
    made = client.post(AGENTS, json={"name": "leads", "model": "local"})
    assert made.status_code == 201, made.text
    return f"{AGENTS}/{made.json()['agent']['id']}"


def agent_number(agent: str) -> int:
    return int(agent.rsplit("/", 1)[1])


def person() -> dict[str, str]:
    """A lead whose every value is unique to the test (so a scan of Redis can look for it)."""
    tag = secrets.token_hex(6)
    return {"name": f"Ann {tag}", "email": f"ann.{tag}@example.com", "phone": f"+1 555 {int(tag, 16) % 10**7:07d}",
            "companyName": f"Acme {tag}", "message": f"Call me about {tag}"}


def values_of(raw: redis.Redis, key: bytes) -> list[bytes]:
    """Every string a key holds, whatever its type."""
    kind = raw.type(key).decode()
    if kind == "string":
        return [raw.get(key) or b""]
    if kind == "hash":
        return [part for pair in raw.hgetall(key).items() for part in pair]
    if kind == "zset":
        return list(raw.zrange(key, 0, -1))
    if kind == "set":
        return list(raw.smembers(key))
    if kind == "list":
        return list(raw.lrange(key, 0, -1))
    if kind == "stream":
        return [v for _, fields in raw.xrange(key) for pair in fields.items() for v in pair]
    return []


def agent_keys(raw: redis.Redis, prefix: str, agent_id: int) -> list[bytes]:
    """Every key in the agent's hash tag (its leads, knowledge and conversation index)."""
    return list(raw.scan_iter(match=f"{prefix}:*{{{agent_id}}}*", count=1000))


def test_a_lead_is_captured_listed_and_erased(client: httpx.Client, agent: str) -> None:
    sent = person()
    created = client.post(f"{agent}/leads", json=sent)
    assert created.status_code == 201, created.text
    assert "idempotent-replayed" not in created.headers
    lead = created.json()["lead"]
    assert lead == {**sent, "id": lead["id"], "agentId": agent_number(agent), "conversationId": None,
                    "createdAt": lead["createdAt"]}
    assert lead["id"].startswith("lead_") and len(lead["id"]) >= 5 + 22  # ≥ 128 random bits
    assert lead["createdAt"].endswith("Z") and len(lead["createdAt"]) == len("2026-12-02T18:00:00.000Z")
    assert client.get(f"{agent}/leads").json() == {"leads": [lead], "nextCursor": None}

    assert client.delete(f"{agent}/leads/{lead['id']}").status_code == 204
    assert client.get(f"{agent}/leads").json() == {"leads": [], "nextCursor": None}
    again = client.delete(f"{agent}/leads/{lead['id']}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


def test_the_agent_path_takes_the_ag_form_and_unknown_agents_are_404(client: httpx.Client, agent: str) -> None:
    number = agent_number(agent)
    assert client.post(f"{AGENTS}/ag_{number}/leads", json={"phone": "030 1234567"}).status_code == 201
    assert len(client.get(f"{AGENTS}/{number}/leads").json()["leads"]) == 1
    for method in ("GET", "POST"):
        missing = client.request(method, f"{AGENTS}/99999999/leads", json={"email": "a@example.com"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_a_phone_alone_or_an_email_alone_is_enough_and_blanks_are_null(client: httpx.Client, agent: str) -> None:
    phone = client.post(f"{agent}/leads", json={"phone": "+1 (555) 010-9999", "name": "   ", "message": ""})
    assert phone.status_code == 201, phone.text
    assert phone.json()["lead"]["email"] is None
    assert phone.json()["lead"]["name"] is None and phone.json()["lead"]["message"] is None
    email = client.post(f"{agent}/leads", json={"email": "bob+leads@mail.example.co.uk", "name": "  Bob  "})
    assert email.status_code == 201, email.text
    assert email.json()["lead"]["phone"] is None and email.json()["lead"]["name"] == "Bob"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "phone"}),
        ({"name": "No way to reach me", "email": None, "phone": None}, {"email", "phone"}),
        ({"email": "not-an-address"}, {"email"}),
        ({"email": "two@@example.com"}, {"email"}),
        ({"email": "nodot@localhost"}, {"email"}),
        ({"email": " ann@example.com"}, {"email"}),
        ({"email": "a" * 250 + "@example.com"}, {"email"}),
        ({"phone": "call me maybe"}, {"phone"}),
        ({"phone": "12"}, {"phone"}),
        ({"email": "ann@example.com", "name": "n" * 201}, {"name"}),
        ({"email": "ann@example.com", "companyName": "c" * 201}, {"companyName"}),
        ({"email": "ann@example.com", "message": "m" * 5001}, {"message"}),
        ({"email": "ann@example.com", "name": 5}, {"name"}),
        ({"email": "ann@example.com", "conversationId": "short"}, {"conversationId"}),
        ({"email": "ann@example.com", "agentId": 2}, {"agentId"}),
    ],
    ids=lambda v: str(v)[:40],
)
def test_an_invalid_lead_is_refused_naming_its_fields(
    client: httpx.Client, agent: str, body: dict[str, Any], fields: set[str]
) -> None:
    refused = client.post(f"{agent}/leads", json=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["retryable"] is False
    assert set(error["details"]["fields"]) == fields
    assert client.get(f"{agent}/leads").json()["leads"] == []


def test_a_lead_may_name_a_conversation_of_its_agent_only(client: httpx.Client, agent: str) -> None:
    cid = client.post(f"{agent}/chat", json={"message": "hi"}).json()["conversationId"]
    linked = client.post(f"{agent}/leads", json={"email": "ann@example.com", "conversationId": cid})
    assert linked.status_code == 201, linked.text
    assert linked.json()["lead"]["conversationId"] == cid

    other = client.post(AGENTS, json={"name": "other", "model": "local"}).json()["agent"]["id"]
    foreign = client.post(f"{AGENTS}/{other}/leads", json={"email": "ann@example.com", "conversationId": cid})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    unknown = client.post(f"{agent}/leads", json={"email": "ann@example.com", "conversationId": "A" * 32})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert len(client.get(f"{agent}/leads").json()["leads"]) == 1


def test_leads_page_newest_first_with_a_cursor(client: httpx.Client, agent: str) -> None:
    made = [client.post(f"{agent}/leads", json={"email": f"p{n}@example.com"}).json()["lead"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{agent}/leads", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["leads"]) <= 2
        seen += body["leads"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    expected = sorted(made, key=lambda lead: (lead["createdAt"], lead["id"]), reverse=True)
    assert [lead["id"] for lead in seen] == [lead["id"] for lead in expected]
    assert seen[0]["email"] == "p4@example.com" and seen[-1]["email"] == "p0@example.com"


def test_a_leads_cursor_is_refused_on_another_list_and_limit_is_bounded(client: httpx.Client, agent: str) -> None:
    for n in range(2):
        client.post(f"{agent}/leads", json={"email": f"p{n}@example.com"})
    cursor = client.get(f"{agent}/leads", params={"limit": 1}).json()["nextCursor"]
    assert cursor
    other = client.post(AGENTS, json={"name": "other", "model": "local"}).json()["agent"]["id"]
    elsewhere = client.get(f"{AGENTS}/{other}/leads", params={"cursor": cursor})
    assert elsewhere.status_code == 400 and "cursor" in elsewhere.json()["error"]["details"]["fields"]
    conversations = client.get(f"{agent}/conversations", params={"cursor": cursor})
    assert conversations.status_code == 400
    for limit in (0, 101):
        refused = client.get(f"{agent}/leads", params={"limit": limit})
        assert refused.status_code == 400 and "limit" in refused.json()["error"]["details"]["fields"]


def test_the_leads_scope_is_required(server: InProcessServer, agent: str) -> None:
    with server.client(server.key(scopes=[s for s in SCOPES if s != "leads"])) as http:
        for method, path in (("GET", f"{agent}/leads"), ("POST", f"{agent}/leads"), ("DELETE", f"{agent}/leads/lead_x")):
            denied = http.request(method, path, json={"email": "ann@example.com"} if method == "POST" else None)
            assert denied.status_code == 403, (method, denied.text)
            assert denied.json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT"
    with server.client(server.key(scopes=["leads"])) as http:
        assert http.post(f"{agent}/leads", json={"email": "ann@example.com"}).status_code == 201
        assert len(http.get(f"{agent}/leads").json()["leads"]) == 1
    with server.client(server.key(scopes=["leads"], agents=[1])) as http:
        other = http.get(f"{agent}/leads")
        assert other.status_code == 403 and other.json()["error"]["code"] == "AGENT_ACCESS_DENIED"


def test_an_idempotent_create_replays_its_lead_and_refuses_another_body(
    server: InProcessServer, client: httpx.Client, agent: str
) -> None:
    key = {"Idempotency-Key": secrets.token_hex(8)}
    sent = person()
    first = client.post(f"{agent}/leads", json=sent, headers=key)
    replay = client.post(f"{agent}/leads", json=sent, headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert len(client.get(f"{agent}/leads").json()["leads"]) == 1

    other = client.post(f"{agent}/leads", json={**sent, "message": "something else"}, headers=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    # Keys are scoped per API key: another client's same Idempotency-Key is a new request.
    with server.client(server.key()) as another:
        theirs = another.post(f"{agent}/leads", json=sent, headers=key)
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["lead"]["id"] != first.json()["lead"]["id"]
    assert len(client.get(f"{agent}/leads").json()["leads"]) == 2


def test_a_retry_after_the_lead_was_erased_does_not_capture_it_again(client: httpx.Client, agent: str) -> None:
    key = {"Idempotency-Key": secrets.token_hex(8)}
    sent = person()
    lead = client.post(f"{agent}/leads", json=sent, headers=key).json()["lead"]
    assert client.delete(f"{agent}/leads/{lead['id']}").status_code == 204
    retried = client.post(f"{agent}/leads", json=sent, headers=key)
    assert retried.status_code == 409 and retried.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert client.get(f"{agent}/leads").json()["leads"] == []


def test_erasing_a_lead_leaves_nothing_of_the_person_in_redis(
    client: httpx.Client, agent: str, raw_redis: redis.Redis, key_prefix: str
) -> None:
    sent, kept = person(), person()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    erased = client.post(f"{agent}/leads", json=sent, headers=key).json()["lead"]
    client.post(f"{agent}/leads", json=kept)

    def stored() -> bytes:
        return b"\n".join(v for k in agent_keys(raw_redis, key_prefix, agent_number(agent)) for v in values_of(raw_redis, k))

    before = stored()
    assert all(value.encode() in before for value in sent.values())  # the scan does see stored leads
    assert client.delete(f"{agent}/leads/{erased['id']}").status_code == 204
    after = stored()
    for value in sent.values():
        assert value.encode() not in after, value
    assert all(value.encode() in after for value in kept.values())
    # Its idempotency entry keeps only a tombstone: no digest of the body it was made from.
    idem, _ = Layout(key_prefix).lead_idempotency(agent_number(agent))
    assert list(raw_redis.hgetall(idem).values()) == [f"-:{erased['id']}".encode()]


def test_deleting_the_agent_removes_every_lead_key(
    client: httpx.Client, agent: str, raw_redis: redis.Redis, key_prefix: str
) -> None:
    number = agent_number(agent)
    for n in range(3):
        client.post(f"{agent}/leads", json=person(), headers={"Idempotency-Key": f"k{n}"})
    doomed = client.post(f"{agent}/leads", json=person()).json()["lead"]
    client.delete(f"{agent}/leads/{doomed['id']}")  # a tombstoned idempotency entry stays until the agent goes
    lead_keys = f"{key_prefix}:lead:{{{number}}}".encode()
    assert len([k for k in agent_keys(raw_redis, key_prefix, number) if k.startswith(lead_keys)]) == 5

    assert client.delete(agent).status_code == 204
    left = [k for k in raw_redis.scan_iter(match=f"*{key_prefix}*", count=1000) if f"{{{number}}}".encode() in k]
    assert left == []
    gone = client.get(f"{agent}/leads")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_each_capture_counts_on_its_utc_day_and_an_erasure_does_not_uncount_it(
    client: httpx.Client, agent: str, raw_redis: redis.Redis, key_prefix: str
) -> None:
    daily = Layout(key_prefix).lead_daily(agent_number(agent))
    made = [client.post(f"{agent}/leads", json={"email": f"p{n}@example.com"}).json()["lead"] for n in range(3)]
    key = {"Idempotency-Key": secrets.token_hex(8)}
    client.post(f"{agent}/leads", json={"email": "once@example.com"}, headers=key)
    client.post(f"{agent}/leads", json={"email": "once@example.com"}, headers=key)  # a replay is no new lead
    client.post(f"{agent}/leads", json={"email": "bad"})  # refused: not counted
    days = {lead["createdAt"][:10] for lead in made}
    counts = {day.decode(): int(n) for day, n in raw_redis.hgetall(daily).items()}
    assert sum(counts.values()) == 4 and set(counts) >= days  # (a run across midnight splits the 4)
    client.delete(f"{agent}/leads/{made[0]['id']}")
    assert sum(int(n) for n in raw_redis.hvals(daily)) == 4


def test_the_utc_day_turns_at_midnight_utc() -> None:
    midnight = 1_764_633_600_000  # 2025-12-02T00:00:00.000Z
    assert utc_day(midnight - 1) == "2025-12-01"
    assert utc_day(midnight) == "2025-12-02"


# -- Leads as the widget's endpoint calls it: in code, on the real store ----------------------------


@pytest.fixture
def leads(server: InProcessServer) -> Leads:
    """The service on a store connection of its own (each test closes it on its event loop)."""
    store = Store(connect(server.config.store), server.config.store)
    return Leads(store, Cursors(store.cursor_secret), AgentRegistry(store.agents, server.config.models))


@pytest.mark.anyio
async def test_fields_built_in_code_are_validated_as_a_body_would_be(leads: Leads, agent: str) -> None:
    number = agent_number(agent)
    try:
        for fields, field in ((LeadFields(email="not-an-address"), "email"), (LeadFields(phone="1" * 41), "phone"),
                              (LeadFields(email="ann@example.com", name="x" * 201), "name")):
            with pytest.raises(errors.ValidationFailed) as bad:
                await leads.create(number, fields)
            assert set(bad.value.details.fields) == {field}
        with pytest.raises(errors.ValidationFailed) as neither:
            await leads.create(number, LeadFields(name="Ann"))
        assert set(neither.value.details.fields) == {"email", "phone"}
        with pytest.raises(errors.AgentNotFound):
            await leads.create(99_999_999, LeadFields(email="ann@example.com"))
        with pytest.raises(errors.ValidationFailed):
            await leads.create(number, LeadFields(email="ann@example.com"), conversation_id="../x")
        made = await leads.create(number, LeadFields(email="ann@example.com", company_name=" Acme "),
                                  caller="visitor-1", idempotency_key="form-1")
        again = await leads.create(number, LeadFields(email="ann@example.com", company_name=" Acme "),
                                   caller="visitor-1", idempotency_key="form-1")
        assert not made.replayed and again.replayed and again.lead == made.lead
        assert made.lead.company_name == "Acme" and made.lead.agent_id == number
        page = await leads.list(number, PageQuery(limit=10))
        assert [lead.id for lead in page.leads] == [made.lead.id]
    finally:
        await leads.store.aclose()


@pytest.mark.anyio
async def test_leads_of_one_millisecond_page_by_id_without_loss(leads: Leads, agent: str) -> None:
    """Ties in creation time sort by id (descending), and a cursor between two of them holds."""
    number = agent_number(agent)
    try:
        ids = [f"lead_{secrets.token_urlsafe(18)}" for _ in range(7)]
        for lead_id in ids:
            record = LeadRecord(id=lead_id, name=None, email="tie@example.com", phone=None, company_name=None,
                                message=None, conversation_id=None, created=1_764_633_600_000)
            await leads.store.leads.add(number, record, "2025-12-02", idempotency_digest=None, body_digest="")
        seen, cursor = [], None
        while True:
            page = await leads.list(number, PageQuery(limit=3, cursor=cursor))
            seen += [lead.id for lead in page.leads]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids, reverse=True)
        assert await leads.daily_counts(number, ["2025-12-01", "2025-12-02"]) == [0, 7]
    finally:
        await leads.store.aclose()


@pytest.mark.anyio
async def test_a_lead_racing_its_agents_deletion_leaves_nothing_behind(
    leads: Leads, agent: str, raw_redis: redis.Redis, key_prefix: str
) -> None:
    """The agent check a capture starts with may be a second old: a lead that lands after its agent's
    deletion swept the leads is removed again, not left where no API could erase it."""
    number = agent_number(agent)
    try:
        await leads.create(number, LeadFields(email="first@example.com"))  # the agent is now cached
        await leads.store.agents.delete(number)  # as another replica would, within the cache's second
        with pytest.raises(errors.AgentNotFound):
            await leads.create(number, LeadFields(email="late@example.com"))
        assert [k for k in agent_keys(raw_redis, key_prefix, number) if b":lead:" in k] == []
    finally:
        await leads.store.aclose()
