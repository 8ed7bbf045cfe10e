"""Every auth failure the contract names, as a client sees it."""

from __future__ import annotations

import pytest

from chatspark.apikeys import mint_key
from chatspark.clock import now_ms

CHAT = "/api/v1/agents/1/chat"
BODY = {"message": "When are you open?"}


def error_of(response):  # type: ignore[no-untyped-def]
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer\tx", "cs_live_abc"],
    ids=["absent", "empty", "basic", "bearer-only", "bearer-tab", "no-scheme"],
)
def test_missing_or_malformed_authorization_is_key_missing(server, header):  # type: ignore[no-untyped-def]
    headers = {} if header is None else {"authorization": header}
    with server.client() as http:
        response = http.post(CHAT, json=BODY, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "API_KEY_MISSING"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("token", ["cs_live_doesnotexist", "sk-something-else", "cs_test_" + "x" * 200])
def test_unknown_key_is_invalid(server, token):  # type: ignore[no-untyped-def]
    with server.client(token) as http:
        response = http.post(CHAT, json=BODY)
    assert response.status_code == 401
    assert error_of(response)["code"] == "API_KEY_INVALID"


def test_a_near_miss_of_a_real_key_is_invalid(server):  # type: ignore[no-untyped-def]
    real = server.key()
    with server.client(real[:-1] + ("A" if real[-1] != "A" else "B")) as http:
        response = http.post(CHAT, json=BODY)
    assert error_of(response)["code"] == "API_KEY_INVALID"


def test_expired_key_is_rejected_as_expired(server):  # type: ignore[no-untyped-def]
    plain, record = mint_key("live", expires_ms=now_ms() - 1000)
    server.put_key(record)
    with server.client(plain) as http:
        response = http.post(CHAT, json=BODY)
    assert response.status_code == 401
    assert error_of(response)["code"] == "API_KEY_EXPIRED"


def test_revoked_key_is_rejected_as_revoked(server):  # type: ignore[no-untyped-def]
    plain, record = mint_key("live")
    server.put_key(record)
    with server.client(plain) as http:
        assert http.post(CHAT, json=BODY).status_code == 200
        import msgspec

        server.put_key(msgspec.structs.replace(record, revoked=now_ms()))
        response = http.post(CHAT, json=BODY)
    assert response.status_code == 401
    assert error_of(response)["code"] == "API_KEY_REVOKED"


def test_key_without_chat_scope_gets_scope_insufficient(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(scopes=["agents:read"])) as http:
        response = http.post(CHAT, json=BODY)
    assert response.status_code == 403
    assert error_of(response)["code"] == "API_KEY_SCOPE_INSUFFICIENT"


def test_key_restricted_to_other_agents_gets_access_denied(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[2])) as http:
        denied = http.post(CHAT, json=BODY)
        allowed = http.post("/api/v1/agents/2/chat", json=BODY)
    assert denied.status_code == 403
    assert error_of(denied)["code"] == "AGENT_ACCESS_DENIED"
    assert allowed.status_code == 200


def test_key_may_name_an_agent_that_does_not_exist_yet(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1, 999])) as http:
        assert http.post(CHAT, json=BODY).status_code == 200
        missing = http.post("/api/v1/agents/999/chat", json=BODY)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "AGENT_NOT_FOUND"


def test_auth_is_checked_before_the_body(server):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.post(CHAT, content=b"{not json")
    assert error_of(response)["code"] == "API_KEY_MISSING"


def test_the_store_keeps_only_a_hash_of_the_key(server, raw_redis):  # type: ignore[no-untyped-def]
    plain = server.key()
    prefix = server.config.store.prefix
    for name in raw_redis.scan_iter(match=f"{prefix}:*", count=1000):
        assert plain.encode() not in name
        kind = raw_redis.type(name)
        value = raw_redis.get(name) if kind == b"string" else repr(raw_redis.hgetall(name) if kind == b"hash" else b"").encode()
        assert plain.encode() not in (value or b"")
