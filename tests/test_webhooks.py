"""Webhooks over the API, and their deliveries to a real receiver: an aiohttp server on 127.0.0.1
that records every request as it came (raw body, headers) and answers as each test plans it.

Each delivery test runs the app on a key prefix of its own (webhooks belong to the whole service,
so another test's webhooks would receive its events) with short retry intervals; waits are bounded
with wide slack and nothing asserts on speed, only on what arrived and in which order it could.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from chatspark.store.layout import Layout
from chatspark.config import DEFAULT_PATH as DEFAULT_CONFIG
from tests.conftest import InProcessServer, make_config

WEBHOOKS = "/api/v1/webhooks"
WAIT = 30.0  # seconds: the bound on every wait for something to arrive


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers["X-ChatSpark-Event"]

    @property
    def delivery(self) -> str:
        return self.headers["X-ChatSpark-Delivery"]


class Receiver:
    """A webhook receiver on a real socket. `plan(path, 500, 500, 200)`: the answers to the first
    requests on that path, the last one repeated; "hang" never answers (until the receiver stops)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._plans: dict[str, list[int | str]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)
        self.port = 0

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)  # type: ignore[union-attr]  (set once started)
        self._thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *answers: int | str) -> str:
        with self._lock:
            self._plans[path] = list(answers)
        return self.url(path)

    def received(self, path: str | None = None, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if (path is None or r.path == path) and (event is None or r.event == event)]

    def wait_for(self, count: int, path: str | None = None, event: str | None = None, timeout: float = WAIT) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(path, event)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} requests to {path} ({event}) after {timeout}s")
            time.sleep(0.05)

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            seen = sum(1 for r in self.requests if r.path == request.path)
            self.requests.append(Received(request.path, dict(request.headers), body))
            plan = self._plans.get(request.path) or [200]
            answer = plan[min(seen, len(plan) - 1)]
        if answer == "hang":
            await self._stopping.wait()  # type: ignore[union-attr]
            answer = 200
        return web.Response(status=int(answer), text="ok")


def verify(received: Received, secret: str) -> None:
    """Both signatures, checked the way the README tells receivers to check them."""
    timestamp = received.headers["X-ChatSpark-Timestamp"]
    assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 600
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["X-ChatSpark-Signature"], expected)
    signed = timestamp.encode() + b"." + received.body
    timestamped = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["X-ChatSpark-Signature-Timestamped"], timestamped)
    assert received.headers["Content-Type"] == "application/json"
    assert received.json["event"] == received.event


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def start_app(redis_url: str, key_prefix: str) -> Iterator[Callable[..., InProcessServer]]:
    """The app on a prefix of the test's own (or `prefix`), private receivers allowed, short retries;
    `webhooks` overrides more of [webhooks]. No seeded knowledge (its training event is not wanted)."""
    started: list[InProcessServer] = []
    own = f"{key_prefix}-wh-{secrets.token_hex(3)}"

    def start(prefix: str | None = None, store_url: str | None = None, **webhooks: Any) -> InProcessServer:
        settings = {"allow_private_urls": True, "retry_seconds": [0.3, 0.3, 0.3], **webhooks}
        config = make_config(store_url or redis_url, prefix or own, knowledge={"seed": []}, webhooks=settings)
        server = InProcessServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            server.stop()
        except RuntimeError:
            pass  # stopped by the test


@pytest.fixture
def app(start_app: Callable[..., InProcessServer]) -> InProcessServer:
    return start_app()


@pytest.fixture
def http(app: InProcessServer) -> Iterator[httpx.Client]:
    """A test-mode key: plain http receivers are allowed to test keys when private URLs are."""
    with app.client(app.key("test")) as client:
        yield client


def new_agent(http: httpx.Client, name: str = "hooked") -> int:
    made = http.post("/api/v1/agents", json={"name": name, "model": "local"})
    assert made.status_code == 201, made.text
    return made.json()["agent"]["id"]


def register(http: httpx.Client, url: str, events: list[str], **more: Any) -> tuple[dict, str]:
    made = http.post(WEBHOOKS, json={"name": "crm", "url": url, "events": events, **more})
    assert made.status_code == 201, made.text
    return made.json()["webhook"], made.json()["secret"]


def deliveries(http: httpx.Client, webhook_id: int) -> list[dict]:
    listed = http.get(f"{WEBHOOKS}/{webhook_id}/deliveries")
    assert listed.status_code == 200, listed.text
    return listed.json()["deliveries"]


def wait_for_deliveries(http: httpx.Client, webhook_id: int, statuses: list[str], timeout: float = WAIT) -> list[dict]:
    """The webhook's deliveries once their statuses (newest first) are these: a request seen by the
    receiver is recorded a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(http, webhook_id)
        if [d["status"] for d in found] == statuses:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries are not {statuses} after {timeout}s: {found}")
        time.sleep(0.05)


def wait_for_delivery(http: httpx.Client, webhook_id: int, status: str, timeout: float = WAIT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(http, webhook_id)
        if found and found[0]["status"] == status:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {status} delivery after {timeout}s: {found}")
        time.sleep(0.05)


# -- the management API -----------------------------------------------------------------------------


def test_register_list_get_patch_delete_and_the_secret_is_shown_once(http, receiver):  # type: ignore[no-untyped-def]
    url = receiver.url("/crm")
    made = http.post(WEBHOOKS, json={"name": "CRM", "url": url, "events": ["agent.updated", "lead.captured"]})
    assert made.status_code == 201, made.text
    webhook, secret = made.json()["webhook"], made.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert webhook["name"] == "CRM" and webhook["url"] == url and webhook["isActive"] is True
    assert webhook["events"] == ["agent.updated", "lead.captured"] and webhook["agentIds"] == []
    assert webhook["createdAt"].endswith("Z") and isinstance(webhook["id"], int)

    one = http.get(f"{WEBHOOKS}/{webhook['id']}")
    assert one.status_code == 200 and one.json() == {"webhook": webhook}
    assert secret not in one.text
    second, _ = register(http, receiver.url("/other"), ["message.sent"])
    listed = http.get(WEBHOOKS, params={"limit": 1}).json()
    assert [w["id"] for w in listed["webhooks"]] == [second["id"]] and secret not in json.dumps(listed)
    rest = http.get(WEBHOOKS, params={"cursor": listed["nextCursor"]}).json()
    assert [w["id"] for w in rest["webhooks"]] == [webhook["id"]] and rest["nextCursor"] is None

    changed = http.patch(f"{WEBHOOKS}/{webhook['id']}", json={"name": "CRM 2", "events": ["training.failed"],
                                                              "isActive": False, "agentIds": [3, 1, 3]})
    assert changed.status_code == 200, changed.text
    shown = changed.json()["webhook"]
    assert shown["name"] == "CRM 2" and shown["events"] == ["training.failed"] and shown["isActive"] is False
    assert shown["agentIds"] == [1, 3] and shown["url"] == url and shown["createdAt"] == webhook["createdAt"]
    assert http.get(f"{WEBHOOKS}/{webhook['id']}").json()["webhook"] == shown
    assert http.get(f"{WEBHOOKS}/{webhook['id']}/deliveries").json() == {"deliveries": [], "nextCursor": None}

    assert http.delete(f"{WEBHOOKS}/{webhook['id']}").status_code == 204
    for gone in (http.get(f"{WEBHOOKS}/{webhook['id']}"), http.delete(f"{WEBHOOKS}/{webhook['id']}"),
                 http.patch(f"{WEBHOOKS}/{webhook['id']}", json={"name": "x"}),
                 http.get(f"{WEBHOOKS}/{webhook['id']}/deliveries"), http.get(f"{WEBHOOKS}/nope")):
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["message.sent", "message.deleted"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "http://example.com/hook"}, "url"),  # a live key needs https
        ({"url": "https://127.0.0.1/hook"}, "url"),  # private addresses are refused (flag off)
        ({"url": "https://10.1.2.3/hook"}, "url"),
        ({"name": ""}, "name"),
        ({"secret": "mine"}, "secret"),
    ],
)
def test_invalid_webhooks_are_refused_naming_the_field(client, body, field):  # type: ignore[no-untyped-def]
    sent = {"name": "n", "url": "https://example.com/hook", "events": ["message.sent"], **body}
    refused = client.post(WEBHOOKS, json=sent)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in {name.split("[")[0] for name in refused.json()["error"]["details"]["fields"]}


def test_https_is_required_of_live_keys_and_http_only_of_test_keys_when_private_urls_are_allowed(  # type: ignore[no-untyped-def]
    server, app, receiver
):
    with app.client(app.key("live")) as live:
        refused = live.post(WEBHOOKS, json={"name": "n", "url": receiver.url("/x"), "events": ["message.sent"]})
    assert refused.status_code == 400 and "https" in refused.json()["error"]["details"]["fields"]["url"][0]
    with app.client(app.key("test")) as test:
        assert test.post(WEBHOOKS, json={"name": "n", "url": receiver.url("/x"), "events": ["message.sent"]}).status_code == 201
    with server.client(server.key("test")) as guarded:  # the shipped config: private URLs refused
        refused = guarded.post(WEBHOOKS, json={"name": "n", "url": "http://example.com/", "events": ["message.sent"]})
    assert refused.status_code == 400


def test_only_unrestricted_keys_with_the_webhooks_scope_manage_webhooks(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1])) as restricted:
        for answer in (restricted.get(WEBHOOKS), restricted.post(WEBHOOKS, json={}), restricted.get(f"{WEBHOOKS}/1"),
                       restricted.patch(f"{WEBHOOKS}/1", json={}), restricted.delete(f"{WEBHOOKS}/1"),
                       restricted.get(f"{WEBHOOKS}/1/deliveries")):
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "AGENT_ACCESS_DENIED"
    with server.client(server.key(scopes=["agents:read"])) as unscoped:
        answer = unscoped.get(WEBHOOKS)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "API_KEY_SCOPE_INSUFFICIENT"


# -- deliveries -------------------------------------------------------------------------------------


def test_patching_an_agent_delivers_agent_updated_signed_with_its_changes(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    webhook, secret = register(http, receiver.url("/agents"), ["agent.updated"])
    patched = http.patch(f"/api/v1/agents/{agent}", json={"botName": "Sparky 2", "name": "hooked", "temperature": 0.5})
    assert patched.status_code == 200
    [received] = receiver.wait_for(1, "/agents")
    verify(received, secret)
    assert received.event == "agent.updated" and received.delivery.startswith("dlv_")
    body = received.json
    assert body["data"] == {"agentId": agent, "updatedAt": patched.json()["agent"]["updatedAt"],
                            "changes": ["botName", "temperature"]}  # `name` was sent unchanged
    assert body["timestamp"] == patched.json()["agent"]["updatedAt"]
    done = wait_for_delivery(http, webhook["id"], "delivered")
    assert done == {"id": received.delivery, "event": "agent.updated", "status": "delivered", "attempts": 1,
                    "lastStatusCode": 200, "nextAttemptAt": None, "createdAt": done["createdAt"]}


def test_a_completed_text_source_delivers_training_completed(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    _, secret = register(http, receiver.url("/training"), ["training.completed", "training.failed"])
    added = http.post(f"/api/v1/agents/{agent}/training",
                      json={"source": "faq", "type": "text", "data": "# Hours\nWe open at nine every weekday."})
    assert added.status_code == 201, added.text
    [received] = receiver.wait_for(1, "/training", timeout=60)
    verify(received, secret)
    source = http.get(f"/api/v1/agents/{agent}/training/{added.json()['source']['id']}").json()["source"]
    assert source["status"] == "completed"  # the event is written with the status: never before it
    assert received.json["event"] == "training.completed"
    assert received.json["data"] == {"trainingId": source["id"], "agentId": agent, "source": "faq",
                                     "status": "completed", "dataCount": source["dataCount"], "error": None}


def test_a_receiver_failing_twice_gets_three_attempts_with_one_delivery_id(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    webhook, secret = register(http, receiver.plan("/flaky", 500, 500, 200), ["agent.updated"])
    http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "hi"})
    attempts = receiver.wait_for(3, "/flaky")
    assert len({a.delivery for a in attempts}) == 1 and len({a.body for a in attempts}) == 1
    for attempt in attempts:
        verify(attempt, secret)
    done = wait_for_delivery(http, webhook["id"], "delivered")
    assert done["id"] == attempts[0].delivery and done["attempts"] == 3 and done["lastStatusCode"] == 200
    time.sleep(1)  # three times the retry interval: no fourth attempt comes
    assert len(receiver.received("/flaky")) == 3


def test_a_receiver_that_never_answers_does_not_delay_another_webhook(start_app, receiver):  # type: ignore[no-untyped-def]
    app = start_app(concurrency=4, per_webhook_concurrency=2, timeout_seconds=60)
    with app.client(app.key("test")) as http:
        agent = new_agent(http)
        dead, _ = register(http, receiver.plan("/dead", "hang"), ["agent.updated"])
        alive, _ = register(http, receiver.url("/alive"), ["agent.updated"])
        for n in range(6):
            assert http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": f"hello {n}"}).status_code == 200
        receiver.wait_for(6, "/alive")
        # Every event reached the live receiver while the dead one still holds its first attempts.
        assert len(receiver.received("/dead")) <= 2
        assert all(d["status"] == "pending" and d["attempts"] == 0 for d in deliveries(http, dead["id"]))
        shown = wait_for_deliveries(http, alive["id"], ["delivered"] * 6)
        assert {d["id"] for d in shown} == {r.delivery for r in receiver.received("/alive")}
        first = http.get(f"{WEBHOOKS}/{alive['id']}/deliveries", params={"limit": 4}).json()
        rest = http.get(f"{WEBHOOKS}/{alive['id']}/deliveries", params={"cursor": first["nextCursor"]}).json()
        assert first["deliveries"] + rest["deliveries"] == shown and rest["nextCursor"] is None


def test_a_webhook_failing_persistently_is_deactivated_and_patch_re_enables_it(start_app, receiver):  # type: ignore[no-untyped-def]
    app = start_app(deactivate_after=2, retry_seconds=[0.2])
    with app.client(app.key("test")) as http:
        agent = new_agent(http)
        webhook, _ = register(http, receiver.plan("/down", 503), ["agent.updated"])
        for n in range(2):
            http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": f"down {n}"})
        failed = wait_for_deliveries(http, webhook["id"], ["failed", "failed"])
        assert len(receiver.received("/down")) == 4  # 2 deliveries x 2 attempts
        assert all(d["attempts"] == 2 and d["lastStatusCode"] == 503 for d in failed)
        assert http.get(f"{WEBHOOKS}/{webhook['id']}").json()["webhook"]["isActive"] is False
        # Inactive: events are not delivered to it.
        http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "while inactive"})
        watcher, _ = register(http, receiver.url("/watcher"), ["agent.updated"])
        http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "watched"})
        receiver.wait_for(1, "/watcher")
        assert len(deliveries(http, webhook["id"])) == 2
        # Re-enabled: delivered again.
        receiver.plan("/down", 200)
        enabled = http.patch(f"{WEBHOOKS}/{webhook['id']}", json={"isActive": True})
        assert enabled.status_code == 200 and enabled.json()["webhook"]["isActive"] is True
        http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "back"})
        done = wait_for_delivery(http, webhook["id"], "delivered")
        assert json.loads(receiver.received("/down")[-1].body)["data"]["agentId"] == agent and done["attempts"] == 1


def test_agent_ids_limit_a_webhook_to_those_agents(http, receiver):  # type: ignore[no-untyped-def]
    mine, other = new_agent(http, "mine"), new_agent(http, "other")
    register(http, receiver.url("/mine"), ["agent.updated"], agentIds=[mine])
    register(http, receiver.url("/all"), ["agent.updated"])
    http.patch(f"/api/v1/agents/{other}", json={"welcomeMessage": "other"})
    http.patch(f"/api/v1/agents/{mine}", json={"welcomeMessage": "mine"})
    receiver.wait_for(2, "/all")
    [only] = receiver.wait_for(1, "/mine")
    assert only.json["data"]["agentId"] == mine
    assert {r.json["data"]["agentId"] for r in receiver.received("/all")} == {mine, other}
    time.sleep(0.5)
    assert len(receiver.received("/mine")) == 1


def test_an_event_type_not_subscribed_is_not_delivered(http, receiver):  # type: ignore[no-untyped-def]
    agent = new_agent(http)
    register(http, receiver.url("/leads"), ["lead.captured"])
    register(http, receiver.url("/agents"), ["agent.updated"])
    http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "x"})
    receiver.wait_for(1, "/agents")
    time.sleep(0.5)
    assert receiver.received("/leads") == []


def test_a_delivery_claimed_by_a_replica_that_stopped_is_taken_over(start_app, receiver, key_prefix):  # type: ignore[no-untyped-def]
    prefix = f"{key_prefix}-wh-takeover-{secrets.token_hex(3)}"
    settings = {"claim_idle_seconds": 1.0, "timeout_seconds": 120}
    first = start_app(prefix, **settings)
    with first.client(first.key("test")) as http:
        agent = new_agent(http)
        webhook, secret = register(http, receiver.plan("/slow", "hang", 200), ["agent.updated"])
        http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "taken over"})
        [claimed] = receiver.wait_for(1, "/slow")  # the first replica's attempt, left hanging
    second = start_app(prefix, **settings)
    first.stop()  # mid-attempt: its claim is never acknowledged
    attempts = receiver.wait_for(2, "/slow")
    assert attempts[1].delivery == claimed.delivery and attempts[1].body == claimed.body
    verify(attempts[1], secret)
    with second.client(second.key("test")) as http:
        done = wait_for_delivery(http, webhook["id"], "delivered")
    assert done["id"] == claimed.delivery and done["attempts"] == 1 and done["lastStatusCode"] == 200


def test_an_outbox_entry_that_is_not_an_event_does_not_hold_up_the_events_behind_it(app, http, receiver, raw_redis):  # type: ignore[no-untyped-def]
    outbox = Layout(app.config.store.prefix).webhook_outbox()
    agent = new_agent(http)
    register(http, receiver.url("/after"), ["agent.updated"])
    raw_redis.xadd(outbox, {"e": "no.such.event", "a": "x"})
    http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "after the bad entry"})
    [received] = receiver.wait_for(1, "/after")
    assert received.json["data"]["agentId"] == agent
    assert raw_redis.xlen(outbox) == 0


def test_an_event_acknowledged_by_a_replica_killed_right_after_still_arrives(  # type: ignore[no-untyped-def]
    spawn_server, start_app, fake_openai, receiver, redis_url, key_prefix, tmp_path
):
    """SIGKILL right after the PATCH answered: the event was written with the change, so another
    replica delivers it (taking over the killed one's attempt if it had started one)."""
    prefix = f"{key_prefix}-wh-kill-{secrets.token_hex(3)}"
    shipped = DEFAULT_CONFIG.read_text()
    config = shipped.replace('backend = "litellm"', 'backend = "openai"').replace(
        "[webhooks]\n", "[webhooks]\nallow_private_urls = true\n").replace("claim_idle_seconds = 60 ", "claim_idle_seconds = 1 ")
    assert config.count("allow_private_urls = true") == 1 and "claim_idle_seconds = 1 " in config
    path = tmp_path / "config.toml"
    path.write_text(config)
    doomed = spawn_server(fake_openai.base_url, CHATSPARK_CONFIG=str(path), CHATSPARK_REDIS_PREFIX=prefix)
    survivor_config = make_config(redis_url, prefix, knowledge={"seed": []})
    key = InProcessServer(survivor_config).key("test")  # stored under the prefix; that server never starts
    with doomed.client(key) as http:
        agent = new_agent(http)
        webhook, secret = register(http, receiver.plan("/kill", "hang", 200), ["agent.updated"], agentIds=[agent])
        assert http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": "last words"}).status_code == 200
    doomed.process.kill()
    doomed.process.wait(10)
    survivor = start_app(prefix, claim_idle_seconds=1.0)
    with survivor.client(key) as http:
        done = wait_for_delivery(http, webhook["id"], "delivered")
    received = receiver.received("/kill")
    assert {r.delivery for r in received} == {done["id"]}
    verify(received[-1], secret)
    assert received[-1].json["data"]["changes"] == ["welcomeMessage"]


def test_events_survive_a_redis_killed_right_after_they_were_acknowledged(start_app, receiver):  # type: ignore[no-untyped-def]
    """An append-only Redis (fsync always) SIGKILLed right after the last of five PATCHes was
    acknowledged, their events anywhere between the outbox and a retry (the receiver fails the first
    attempt): once Redis is back, each is delivered."""
    from tests.faults.harness import PrivateRedis

    redis = PrivateRedis().start()
    try:
        app = start_app(store_url=redis.url, claim_idle_seconds=1.0)
        with app.client(app.key("test")) as http:
            agent = new_agent(http)
            webhook, _ = register(http, receiver.plan("/r", 500, 200), ["agent.updated"])
            for n in range(5):
                assert http.patch(f"/api/v1/agents/{agent}", json={"welcomeMessage": f"{n}"}).status_code == 200
            redis.kill()
            time.sleep(1)
            redis.restart()
            shown = wait_for_deliveries(http, webhook["id"], ["delivered"] * 5, timeout=60)
        assert {r.delivery for r in receiver.received("/r")} == {d["id"] for d in shown}
    finally:
        redis.stop()
