"""The widget endpoints: browsers reach public agents without a key — origin rule and CORS, visitor
tokens, identity verification, conversation ownership, per-visitor and per-address limits, the
agent's widget cap, and answers through the native turn (JSON, stream, Idempotency-Key)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from chatspark.visitors import user_hash
from tests.conftest import InProcessServer, RunningServer, make_config

ORIGIN = "https://shop.example"
OTHER_ORIGIN = "https://evil.example"
SECRET = "s3cret-identity-key-0123456789"
CORS_NAMES = ("access-control-allow-origin", "access-control-expose-headers", "access-control-allow-methods",
              "access-control-allow-headers", "access-control-max-age", "access-control-allow-credentials")


def widget_config(redis_url: str, prefix: str, **widget: int) -> Any:
    config = make_config(redis_url, prefix)
    limits = {"visitor_rate_per_minute": 1000, "address_rate_per_minute": 10_000, **widget}
    return msgspec.structs.replace(config, widget=msgspec.structs.replace(config.widget, **limits))


@pytest.fixture(scope="module")
def widget_server(redis_url: str, key_prefix: str) -> Iterator[InProcessServer]:
    """The app on a prefix of its own with limits no test meets unless it means to (the in-process
    client's address is always 127.0.0.1: a shared address log would couple the tests)."""
    running = InProcessServer(widget_config(redis_url, f"{key_prefix}-widget")).start()
    yield running
    running.stop()


@pytest.fixture
def admin(widget_server: InProcessServer) -> Iterator[httpx.Client]:
    with widget_server.client(widget_server.key()) as http:
        yield http


@pytest.fixture
def browser(widget_server: InProcessServer) -> Iterator[httpx.Client]:
    """A client without a key, as a page's script is."""
    with widget_server.client() as http:
        yield http


@pytest.fixture
def make_agent(admin: httpx.Client) -> Callable[..., int]:
    def make(**fields: Any) -> int:
        body = {"name": "Widget agent", "model": "local", "allowedOrigins": [ORIGIN], **fields}
        created = admin.post("/api/v1/agents", json=body)
        assert created.status_code == 201, created.text
        return created.json()["agent"]["id"]

    return make


def start(http: httpx.Client, agent: int | str, origin: str = ORIGIN, **body: Any) -> httpx.Response:
    return http.post(f"/api/v1/widget/{agent}/session", json=body, headers={"origin": origin})


def token_of(http: httpx.Client, agent: int | str, **body: Any) -> str:
    answer = start(http, agent, **body)
    assert answer.status_code == 200, answer.text
    return answer.json()["visitorToken"]


def chat(http: httpx.Client, agent: int | str, token: str | None, origin: str = ORIGIN, **body: Any) -> httpx.Response:
    headers = {"origin": origin, **({"chatspark-visitor": token} if token else {}), **body.pop("headers", {})}
    return http.post(f"/api/v1/widget/{agent}/chat", json={"message": "When are you open?", **body}, headers=headers)


def messages(http: httpx.Client, agent: int | str, token: str, cid: str, origin: str = ORIGIN) -> httpx.Response:
    return http.get(f"/api/v1/widget/{agent}/conversations/{cid}/messages",
                    headers={"origin": origin, "chatspark-visitor": token})


def lead(http: httpx.Client, agent: int | str, token: str, origin: str = ORIGIN, **body: Any) -> httpx.Response:
    headers = {"origin": origin, "chatspark-visitor": token, **body.pop("headers", {})}
    return http.post(f"/api/v1/widget/{agent}/leads", json={"email": "ada@example.com", **body}, headers=headers)


def no_cors(response: httpx.Response) -> bool:
    return not any(name in response.headers for name in CORS_NAMES)


def refused(response: httpx.Response, status: int = 403, code: str = "AGENT_ACCESS_DENIED") -> bool:
    return response.status_code == status and response.json()["error"]["code"] == code


# --- origin rule and CORS ------------------------------------------------------------------------


def test_a_call_without_origin_or_from_another_origin_is_refused_server_side(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    token = token_of(browser, agent)
    base = f"/api/v1/widget/{agent}"
    for origin in ({}, {"origin": OTHER_ORIGIN}, {"origin": ORIGIN + "/"}, {"origin": "https://SHOP.example.evil"}):
        headers = {**origin, "chatspark-visitor": token}
        answers = [
            browser.post(f"{base}/session", json={}, headers=headers),
            browser.post(f"{base}/chat", json={"message": "hi"}, headers=headers),
            browser.get(f"{base}/conversations/{'x' * 32}/messages", headers=headers),
            browser.options(f"{base}/chat", headers={**headers, "access-control-request-method": "POST"}),
        ]
        for answer in answers:
            assert refused(answer), (origin, answer.request.method, answer.text)
            assert no_cors(answer), answer.headers
    # Two Origin headers are not one allowed origin.
    doubled = browser.post(f"{base}/session", json={}, headers=[("origin", ORIGIN), ("origin", ORIGIN)])
    assert refused(doubled) and no_cors(doubled)


def test_curl_without_origin_or_with_a_wrong_one_gets_403_and_no_cors_headers(live_server_widget):  # type: ignore[no-untyped-def]
    """The server refuses, not only the browser: curl (no Origin unless told) against real uvicorn."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server, agent = live_server_widget
    url = f"{server.base_url}/api/v1/widget/{agent}/session"

    def run(*args: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        done = subprocess.run([curl, "-s", "-i", "-X", "POST", url, "-H", "content-type: application/json",
                               "-d", "{}", *args], capture_output=True, text=True, timeout=30, check=True)
        head, _, body = done.stdout.partition("\n\n")  # (text mode reads CRLF as LF)
        status = int(head.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines()[1:])}
        return status, headers, msgspec.json.decode(body) if body else {}

    for args in ((), ("-H", f"Origin: {OTHER_ORIGIN}")):
        status, headers, body = run(*args)
        assert status == 403 and body["error"]["code"] == "AGENT_ACCESS_DENIED", (args, status, body)
        assert not any(name.startswith("access-control-") for name in headers), headers
    status, headers, body = run("-H", f"Origin: {ORIGIN}")
    assert status == 200 and headers["access-control-allow-origin"] == ORIGIN and body["visitorToken"]


def test_an_allowed_origin_gets_the_grant_on_every_answer_errors_included(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(allowedOrigins=["http://localhost:3000", ORIGIN])
    ok = start(browser, agent)
    unauthenticated = chat(browser, agent, None)
    invalid = browser.post(f"/api/v1/widget/{agent}/session", json={"nope": 1}, headers={"origin": ORIGIN})
    assert ok.status_code == 200 and refused(unauthenticated, 401, "API_KEY_INVALID") and invalid.status_code == 400
    for answer in (ok, unauthenticated, invalid):
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["vary"] == "Origin"
        assert answer.headers["access-control-expose-headers"] == (
            "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset")
        assert "access-control-allow-credentials" not in answer.headers
    assert unauthenticated.json()["error"]["message"] == (
        f"A visitor token is required: POST /api/v1/widget/{agent}/session first.")


def test_preflight_is_granted_to_allowed_origins_only(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    ask = {"access-control-request-method": "POST", "access-control-request-headers": "content-type, chatspark-visitor"}
    for path in ("session", "chat", f"conversations/{'a' * 32}/messages"):
        granted = browser.options(f"/api/v1/widget/ag_{agent}/{path}", headers={"origin": ORIGIN, **ask})
        assert granted.status_code == 204, granted.text
        assert granted.headers["access-control-allow-origin"] == ORIGIN
        assert granted.headers["access-control-allow-methods"] == "GET, POST"
        assert granted.headers["access-control-allow-headers"] == (
            "content-type, chatspark-visitor, idempotency-key, last-event-id, x-request-id")
        assert granted.headers["access-control-max-age"] == "600"
        denied = browser.options(f"/api/v1/widget/{agent}/{path}", headers={"origin": OTHER_ORIGIN, **ask})
        assert refused(denied) and no_cors(denied)


def test_an_agent_without_allowed_origins_is_not_public(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(allowedOrigins=[])
    for origin in (ORIGIN, "http://testserver"):  # not even from the service's own pages
        answer = start(browser, agent, origin=origin)
        assert refused(answer) and no_cors(answer)
    unknown = start(browser, 987_654_321)
    assert refused(unknown, 404, "AGENT_NOT_FOUND") and no_cors(unknown)
    malformed = start(browser, "nope")
    assert refused(malformed, 404, "AGENT_NOT_FOUND") and no_cors(malformed)


def test_the_service_own_origin_is_allowed_for_a_public_agent(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()  # its origins do not include the service's
    answer = start(browser, agent, origin="http://testserver")  # the in-process client's Host
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://testserver"
    assert refused(start(browser, agent, origin="https://testserver"))  # another scheme is another origin


def test_a_same_origin_get_without_origin_counts_as_the_service_own(browser, make_agent):  # type: ignore[no-untyped-def]
    """Browsers send no Origin on a same-origin GET, but they send Sec-Fetch-Site: the demo page
    served by the service reads its messages."""
    agent = make_agent()
    token = token_of(browser, agent, origin="http://testserver")
    cid = chat(browser, agent, token, origin="http://testserver").json()["conversationId"]
    url = f"/api/v1/widget/{agent}/conversations/{cid}/messages"
    same_site = browser.get(url, headers={"chatspark-visitor": token, "sec-fetch-site": "same-origin"})
    assert same_site.status_code == 200 and len(same_site.json()["messages"]) == 2
    for other in ("cross-site", "same-site", "none"):
        answer = browser.get(url, headers={"chatspark-visitor": token, "sec-fetch-site": other})
        assert refused(answer) and no_cors(answer), other
    # With an Origin, the Origin decides.
    assert refused(browser.get(url, headers={"chatspark-visitor": token, "sec-fetch-site": "same-origin",
                                             "origin": OTHER_ORIGIN}))


# --- the session -------------------------------------------------------------------------------


def test_the_session_shows_only_the_public_fields(browser, make_agent):  # type: ignore[no-untyped-def]
    actions = [
        {"id": "pricing", "type": "link", "label": "Pricing", "url": "https://pricing.example/", "primary": True},
        {"id": "callback", "type": "form", "label": "Call me back",
         "fields": [{"key": "name", "label": "Name"}, {"key": "phone", "label": "Phone", "required": True, "type": "tel"}]},
    ]
    agent = make_agent(
        botName="Shopbot", botPersonality="SECRET INSTRUCTIONS", faq=[{"question": "q", "answer": "SECRET FAQ"}],
        welcomeMessage="Hello!", suggestedMessages=["Where is my order?"], actions=actions, primaryColor="#123456",
        identitySecret=SECRET, websiteUrl="https://private.example", widgetMonthlyCap=50,
    )
    answer = start(browser, agent)
    body = answer.json()
    assert answer.status_code == 200
    assert set(body) == {"visitorToken", "visitorId", "identified", "agent"}
    assert body["visitorId"].startswith("v_") and body["identified"] is False
    assert body["agent"] == {
        "id": agent, "botName": "Shopbot", "botAvatar": "", "primaryColor": "#123456", "welcomeMessage": "Hello!",
        "suggestedMessages": ["Where is my order?"],
        "actions": [{**actions[0]}, {**actions[1], "primary": False, "fields": [
            {"key": "name", "label": "Name", "required": False, "type": "text"},
            {"key": "phone", "label": "Phone", "required": True, "type": "tel"}]}],
        "requireIdentity": False, "removeBranding": False,
    }
    for hidden in ("SECRET", SECRET, "shop.example", "private.example", "local", "allowedOrigins"):
        assert hidden not in answer.text


def test_a_valid_token_keeps_its_visitor_and_an_invalid_one_gets_a_new_one(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    first = start(browser, agent).json()
    again = start(browser, agent, visitorToken=first["visitorToken"]).json()
    forged = start(browser, agent, visitorToken=first["visitorToken"][:-2] + "AA").json()
    assert again["visitorId"] == first["visitorId"]
    assert forged["visitorId"] not in (first["visitorId"], None)


def test_a_server_key_is_never_accepted_on_widget_endpoints(widget_server, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    key = widget_server.key()
    with_key = browser.post(f"/api/v1/widget/{agent}/session", json={},
                            headers={"origin": ORIGIN, "authorization": f"Bearer {key}"})
    assert refused(with_key, 400, "VALIDATION_ERROR") and "Authorization" in with_key.json()["error"]["details"]["fields"]
    # A key is no visitor token either.
    assert refused(chat(browser, agent, key), 401, "API_KEY_INVALID")
    # Nothing under the widget lists agents, conversations or keys.
    for path in ("", "/conversations", f"/conversations/{'a' * 32}", "/agents", "/keys"):
        listed = browser.get(f"/api/v1/widget/{agent}{path}", headers={"origin": ORIGIN})
        assert listed.status_code in (404, 405), (path, listed.status_code)


# --- tokens and conversation ownership ----------------------------------------------------------


def test_a_missing_forged_or_other_agents_token_is_401(browser, make_agent):  # type: ignore[no-untyped-def]
    agent, other = make_agent(), make_agent()
    token = token_of(browser, agent)
    body, _, tag = token.partition(".")
    # Every variant of the last character of each part: those that change a bit change the signed
    # bytes; those that change only unused bits are not the canonical encoding. Neither passes.
    def variants(part: str) -> list[str]:
        return [part[:-1] + c for c in "AgBhQw_-" if c != part[-1]]

    forged = [f"{v}.{tag}" for v in variants(body)] + [f"{body}.{v}" for v in variants(tag)]
    for bad in (None, "", "garbage", *forged, f"{body}.{tag[:-1]}", token_of(browser, other), token + "x"):
        answer = chat(browser, agent, bad)
        assert refused(answer, 401, "API_KEY_INVALID"), (bad, answer.text)
    assert chat(browser, agent, token).status_code == 200


def test_a_visitor_cannot_read_or_continue_another_visitors_conversation(admin, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    alice, bob = token_of(browser, agent), token_of(browser, agent)
    first = chat(browser, agent, alice).json()
    cid = first["conversationId"]
    assert chat(browser, agent, alice, message="Are you open on weekends?", conversationId=cid).status_code == 200
    own = messages(browser, agent, alice, cid)
    assert own.status_code == 200
    assert [m["role"] for m in own.json()["messages"]] == ["user", "assistant", "user", "assistant"]
    assert own.json()["messages"][0]["content"] == "When are you open?"
    assert refused(messages(browser, agent, bob, cid), 404, "RESOURCE_NOT_FOUND")
    assert refused(chat(browser, agent, bob, conversationId=cid), 404, "RESOURCE_NOT_FOUND")
    # A conversation started with a server key is no visitor's.
    native = admin.post(f"/api/v1/agents/{agent}/chat", json={"message": "hi"}).json()["conversationId"]
    assert refused(messages(browser, agent, alice, native), 404, "RESOURCE_NOT_FOUND")
    assert refused(chat(browser, agent, alice, conversationId=native), 404, "RESOURCE_NOT_FOUND")
    # The owner's turns are the agent's conversations for the server API, as any other.
    listed = admin.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages").json()["messages"]
    assert len(listed) == 4


def test_messages_page_with_the_native_cursor(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    token = token_of(browser, agent)
    cid = chat(browser, agent, token).json()["conversationId"]
    chat(browser, agent, token, conversationId=cid, message="How can I contact you?")
    headers = {"origin": ORIGIN, "chatspark-visitor": token}
    url = f"/api/v1/widget/{agent}/conversations/{cid}/messages"
    first = browser.get(url, params={"limit": 3}, headers=headers).json()
    rest = browser.get(url, params={"limit": 3, "cursor": first["nextCursor"]}, headers=headers).json()
    assert len(first["messages"]) == 3 and len(rest["messages"]) == 1 and rest["nextCursor"] is None


# --- identity verification ----------------------------------------------------------------------


def test_a_verified_user_is_the_same_visitor_on_every_device(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(identitySecret=SECRET)
    proof = {"userId": "user-42", "hash": user_hash(SECRET, "user-42")}
    laptop, phone = start(browser, agent, **proof).json(), start(browser, agent, **proof).json()
    assert laptop["identified"] is True and laptop["visitorId"] == phone["visitorId"]
    other = start(browser, agent, userId="user-43", hash=user_hash(SECRET, "user-43")).json()
    assert other["visitorId"] != laptop["visitorId"]
    cid = chat(browser, agent, laptop["visitorToken"]).json()["conversationId"]
    seen = messages(browser, agent, phone["visitorToken"], cid)
    assert seen.status_code == 200 and len(seen.json()["messages"]) == 2
    assert chat(browser, agent, phone["visitorToken"], conversationId=cid).status_code == 200
    assert refused(messages(browser, agent, other["visitorToken"], cid), 404, "RESOURCE_NOT_FOUND")
    # Upper-case hex is the same hash.
    assert start(browser, agent, userId="user-42", hash=proof["hash"].upper()).json()["visitorId"] == laptop["visitorId"]


def test_a_wrong_or_missing_hash_is_refused(browser, make_agent):  # type: ignore[no-untyped-def]
    agent, without_secret = make_agent(identitySecret=SECRET), make_agent()
    for body in ({"userId": "user-42", "hash": user_hash(SECRET, "user-43")},
                 {"userId": "user-42", "hash": user_hash("another-secret-of-16+", "user-42")},
                 {"userId": "user-42"}, {"hash": user_hash(SECRET, "user-42")},
                 {"userId": "user-42", "hash": "é" * 64}):
        answer = start(browser, agent, **body)
        assert refused(answer) and answer.json()["error"]["message"] == "identity verification failed", body
        assert answer.headers["access-control-allow-origin"] == ORIGIN  # the page may read why
    assert refused(start(browser, without_secret, userId="user-42", hash=user_hash(SECRET, "user-42")))


def test_require_identity_refuses_anonymous_visitors_everywhere(admin, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(identitySecret=SECRET)
    anonymous = token_of(browser, agent)
    cid = chat(browser, agent, anonymous).json()["conversationId"]
    assert admin.patch(f"/api/v1/agents/{agent}", json={"requireIdentity": True}).status_code == 200
    assert refused(start(browser, agent))
    assert refused(chat(browser, agent, anonymous))
    assert refused(messages(browser, agent, anonymous, cid))
    verified = token_of(browser, agent, userId="u", hash=user_hash(SECRET, "u"))
    assert chat(browser, agent, verified).status_code == 200
    assert start(browser, agent).json()["error"]["message"].startswith("This agent talks only to verified users")


def test_a_new_identity_secret_signs_verified_visitors_out(admin, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(identitySecret=SECRET)
    verified = token_of(browser, agent, userId="u", hash=user_hash(SECRET, "u"))
    assert chat(browser, agent, verified).status_code == 200
    admin.patch(f"/api/v1/agents/{agent}", json={"identitySecret": "a-brand-new-secret-value"})
    assert refused(chat(browser, agent, verified), 401, "API_KEY_INVALID")


def test_the_identity_secret_is_write_only(admin, make_agent):  # type: ignore[no-untyped-def]
    created = admin.post("/api/v1/agents", json={"name": "S", "model": "local", "identitySecret": SECRET})
    agent = created.json()["agent"]["id"]
    got = admin.get(f"/api/v1/agents/{agent}")
    listed = admin.get("/api/v1/agents", params={"limit": 100})
    for answer in (created, got, listed):
        assert SECRET not in answer.text and "identitySecret" not in answer.text
    assert got.json()["agent"]["identityVerification"] is True
    removed = admin.patch(f"/api/v1/agents/{agent}", json={"identitySecret": None})
    assert removed.json()["agent"]["identityVerification"] is False
    too_short = admin.patch(f"/api/v1/agents/{agent}", json={"identitySecret": "short"})
    assert refused(too_short, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("fields", [
    {"allowedOrigins": ["https://shop.example/"]},
    {"allowedOrigins": ["https://shop.example/path"]},
    {"allowedOrigins": ["https://Shop.example"]},
    {"allowedOrigins": ["ftp://shop.example"]},
    {"allowedOrigins": ["http://shop.example:99999"]},
    {"allowedOrigins": ["http://shop.example:0"]},
    {"allowedOrigins": ["http://shop.example:080"]},
    {"allowedOrigins": ["*"]},
    {"allowedOrigins": ["http://[::1]:8000"]},
    {"allowedOrigins": [f"https://s{i}.example" for i in range(51)]},
    {"suggestedMessages": ["x" * 201]},
    {"suggestedMessages": ["hi"] * 11},
    {"actions": [{"id": "a", "type": "link", "label": "No URL"}]},
    {"actions": [{"id": "a", "type": "link", "label": "JS", "url": "javascript:alert(1)"}]},
    {"actions": [{"id": "a", "type": "button", "label": "B", "fields": [{"key": "email", "label": "E"}]}]},
    {"actions": [{"id": "a", "type": "form", "label": "F", "fields": []}]},
    {"actions": [{"id": "a", "type": "popup", "label": "P"}]},
    {"widgetMonthlyCap": -1},
])
def test_widget_fields_are_validated(admin, fields):  # type: ignore[no-untyped-def]
    answer = admin.post("/api/v1/agents", json={"name": "Bad", "model": "local", **fields})
    assert refused(answer, 400, "VALIDATION_ERROR"), answer.text
    assert set(answer.json()["error"]["details"]["fields"]) <= {*fields, *(f"$.{name}" for name in fields)} or any(
        name in answer.json()["error"]["message"] for name in fields), answer.text


def test_the_widget_fields_round_trip_through_the_agent_api(admin):  # type: ignore[no-untyped-def]
    fields = {"allowedOrigins": ["https://a.example", "http://localhost:8000", "https://a.example:443"],
              "suggestedMessages": ["Hi?"], "requireIdentity": False, "widgetMonthlyCap": 7,
              "actions": [{"id": "b", "type": "button", "label": "Talk to a human"}]}
    created = admin.post("/api/v1/agents", json={"name": "RT", "model": "local", **fields}).json()["agent"]
    # As browsers send them (no default port), each once.
    assert created["allowedOrigins"] == ["https://a.example", "http://localhost:8000"]
    assert created["actions"] == [{"id": "b", "type": "button", "label": "Talk to a human", "url": None, "primary": False}]
    assert (created["suggestedMessages"], created["widgetMonthlyCap"], created["identityVerification"]) == (["Hi?"], 7, False)


# --- limits -------------------------------------------------------------------------------------


def test_the_visitor_limit_holds_across_two_servers_on_one_redis(redis_url, key_prefix, start_live_server):  # type: ignore[no-untyped-def]
    config = widget_config(redis_url, f"{key_prefix}-vrate-{secrets.token_hex(3)}", visitor_rate_per_minute=3)
    one = InProcessServer(config).start()
    try:
        two = RunningServer(config).start()
        try:
            with one.client(one.key()) as admin_http:
                agent = admin_http.post("/api/v1/agents", json={
                    "name": "Limited", "model": "local", "allowedOrigins": [ORIGIN]}).json()["agent"]["id"]
            with one.client() as a, two.client() as b:
                alice, bob = token_of(a, agent), token_of(b, agent)
                answers = [chat(http, agent, alice) for http in (a, b, a, b)]
                assert [r.status_code for r in answers] == [200, 200, 200, 429]
                limited = answers[-1]
                assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
                assert 1 <= int(limited.headers["retry-after"]) <= 60
                assert limited.headers["x-ratelimit-limit"] == "3" and limited.headers["x-ratelimit-remaining"] == "0"
                assert limited.headers["access-control-allow-origin"] == ORIGIN  # the widget can read Retry-After
                assert [r.headers["x-ratelimit-remaining"] for r in answers[:3]] == ["2", "1", "0"]
                assert chat(a, agent, alice).status_code == 429
                # Another visitor has a budget of its own; reading does not spend it, leads do.
                assert chat(b, agent, bob).status_code == 200
                cid = answers[0].json()["conversationId"]
                assert messages(a, agent, alice, cid).status_code == 200
                assert lead(a, agent, bob).status_code == 201
                assert chat(b, agent, bob).status_code == 200
                assert refused(lead(a, agent, bob), 429, "RATE_LIMIT_EXCEEDED")
        finally:
            two.stop()
    finally:
        one.stop()


def test_the_client_address_limit_counts_every_widget_request(redis_url, key_prefix):  # type: ignore[no-untyped-def]
    config = widget_config(redis_url, f"{key_prefix}-arate-{secrets.token_hex(3)}", address_rate_per_minute=4)
    server = InProcessServer(config).start()
    try:
        with server.client(server.key()) as admin_http:
            agent = admin_http.post("/api/v1/agents", json={
                "name": "Busy", "model": "local", "allowedOrigins": [ORIGIN]}).json()["agent"]["id"]
        with server.client() as http:
            tokens = [token_of(http, agent) for _ in range(3)]  # three sessions: three new visitors
            assert chat(http, agent, tokens[0]).status_code == 200  # the fourth request from 127.0.0.1
            limited = chat(http, agent, tokens[1])
            assert refused(limited, 429, "RATE_LIMIT_EXCEEDED")
            assert "client address" in limited.json()["error"]["message"]
            assert limited.headers["x-ratelimit-limit"] == "4" and int(limited.headers["retry-after"]) >= 1
            assert refused(start(http, agent), 429, "RATE_LIMIT_EXCEEDED")
            # Refused origins are refused before anything is counted or read.
            assert refused(start(http, agent, origin=OTHER_ORIGIN))
    finally:
        server.stop()


def test_the_widget_monthly_cap_gives_402_after_n_turns(admin, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent(widgetMonthlyCap=2)
    token = token_of(browser, agent)
    answers = [chat(browser, agent, token_of(browser, agent) if i == 1 else token) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 402]
    assert answers[-1].json()["error"]["code"] == "CREDITS_EXHAUSTED"
    assert "widget" in answers[-1].json()["error"]["message"]
    # The cap is the widget's: the server API still answers for this agent.
    assert admin.post(f"/api/v1/agents/{agent}/chat", json={"message": "hi"}).status_code == 200
    # Raising the cap lets the widget answer again (the agent cache is at most a second old).
    admin.patch(f"/api/v1/agents/{agent}", json={"widgetMonthlyCap": 0})
    time.sleep(1.1)
    assert chat(browser, agent, token).status_code == 200


# --- answers ------------------------------------------------------------------------------------


def test_a_streamed_answer_through_the_widget(live_server_widget):  # type: ignore[no-untyped-def]
    server, agent = live_server_widget
    with server.client() as http:
        token = token_of(http, agent)
        with http.stream("POST", f"/api/v1/widget/{agent}/chat",
                         json={"message": "When are you open?", "stream": True},
                         headers={"origin": ORIGIN, "chatspark-visitor": token}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["access-control-allow-origin"] == ORIGIN
            data = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    events = [msgspec.json.decode(d) for d in data[:-1]]
    done = events[-1]
    assert done["done"] is True and done["messageId"].startswith("msg_")
    deltas = [e["delta"] for e in events[:-1]]
    assert len(deltas) > 1 and "Monday to Friday" in "".join(deltas)
    with server.client() as http:
        seen = messages(http, agent, token, done["conversationId"]).json()["messages"]
    assert seen[1]["content"] == "".join(deltas) and seen[1]["id"] == done["messageId"]


@pytest.fixture
def live_server_widget(redis_url: str, key_prefix: str) -> Iterator[tuple[RunningServer, int]]:
    server = RunningServer(widget_config(redis_url, f"{key_prefix}-widget")).start()
    try:
        with server.client(server.key()) as http:
            agent = http.post("/api/v1/agents", json={
                "name": "Streamer", "model": "local", "allowedOrigins": [ORIGIN],
                "faq": [{"question": "When are you open?", "answer": "Monday to Friday, 9:00 to 17:00."}],
            }).json()["agent"]["id"]
        yield server, agent
    finally:
        server.stop()


def test_an_idempotency_key_replays_for_its_visitor_only(browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    alice, bob = token_of(browser, agent), token_of(browser, agent)
    key = {"idempotency-key": "turn-1"}
    first = chat(browser, agent, alice, headers=key)
    again = chat(browser, agent, alice, headers=key)
    bobs = chat(browser, agent, bob, headers=key)
    assert first.status_code == again.status_code == bobs.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert "idempotent-replayed" not in bobs.headers
    assert bobs.json()["conversationId"] != first.json()["conversationId"]
    # The replayed conversation is still Alice's alone.
    assert refused(messages(browser, agent, bob, first.json()["conversationId"]), 404, "RESOURCE_NOT_FOUND")


def test_agent_1_is_public_on_the_demo_origins_and_answers_its_suggestions(browser):  # type: ignore[no-untyped-def]
    for origin in ("http://localhost:8000", "http://127.0.0.1:8000"):
        session = start(browser, 1, origin=origin)
        assert session.status_code == 200, session.text
    public = session.json()["agent"]
    assert public["botName"] == "Sparky" and len(public["suggestedMessages"]) >= 2
    token = session.json()["visitorToken"]
    for suggestion in public["suggestedMessages"]:
        answer = chat(browser, "ag_1", token, origin="http://127.0.0.1:8000", message=suggestion).json()
        assert "Sorry, I don't know" not in answer["text"], (suggestion, answer["text"])


# --- leads ---------------------------------------------------------------------------------------


def test_the_widget_form_captures_a_lead_the_server_api_lists(admin, browser, make_agent):  # type: ignore[no-untyped-def]
    agent = make_agent()
    alice, bob = token_of(browser, agent), token_of(browser, agent)
    cid = chat(browser, agent, alice).json()["conversationId"]
    captured = lead(browser, agent, alice, name="Ada", companyName="Engines Ltd", conversationId=cid)
    assert captured.status_code == 201, captured.text
    assert captured.headers["access-control-allow-origin"] == ORIGIN
    body = captured.json()["lead"]
    assert (body["name"], body["email"], body["conversationId"]) == ("Ada", "ada@example.com", cid)
    listed = admin.get(f"/api/v1/agents/{agent}/leads").json()["leads"]
    assert [row["id"] for row in listed] == [body["id"]]
    # Validated as the server API validates; the conversation must be the visitor's own.
    invalid = lead(browser, agent, alice, email="not-an-address")
    assert refused(invalid, 400, "VALIDATION_ERROR") and "email" in invalid.json()["error"]["details"]["fields"]
    assert refused(lead(browser, agent, alice, email=None, phone=None, name="Only a name"), 400, "VALIDATION_ERROR")
    assert refused(lead(browser, agent, bob, conversationId=cid), 404, "RESOURCE_NOT_FOUND")
    assert refused(lead(browser, agent, "forged"), 401, "API_KEY_INVALID")
    elsewhere = lead(browser, agent, alice, origin=OTHER_ORIGIN)
    assert refused(elsewhere) and no_cors(elsewhere)
    # An Idempotency-Key replays for the same visitor (a double-clicked submit makes one lead).
    key = {"idempotency-key": "form-1"}
    first, again = lead(browser, agent, bob, headers=key), lead(browser, agent, bob, headers=key)
    assert first.status_code == again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert len(admin.get(f"/api/v1/agents/{agent}/leads").json()["leads"]) == 2
    # Nothing under the widget reads leads back.
    assert browser.get(f"/api/v1/widget/{agent}/leads", headers={"origin": ORIGIN, "chatspark-visitor": bob}).status_code == 405
