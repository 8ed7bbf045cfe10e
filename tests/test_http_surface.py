"""What every response shares: health, the error envelope on Starlette's own errors, request ids."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest


def test_health_is_ok_without_auth(server):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"] == "1" and body["store"] == "redis"
    assert body["timestamp"].endswith("Z")


def test_health_is_degraded_when_redis_is_unreachable(start_server, unreachable_redis_url):  # type: ignore[no-untyped-def]
    dead = start_server(store_url=unreachable_redis_url)
    with dead.client() as http:
        response = http.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["failed"] == ["store"]
    assert "127.0.0.1" not in response.text  # no connection details leak


def test_requests_during_a_redis_outage_get_503_service_unavailable(start_server, unreachable_redis_url):  # type: ignore[no-untyped-def]
    dead = start_server(store_url=unreachable_redis_url)
    with dead.client("cs_live_" + "a" * 40) as http:
        response = http.post("/api/v1/agents/1/chat", json={"message": "hi"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE" and error["retryable"] is True


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "RESOURCE_NOT_FOUND"),
        ("GET", "/api/v1/agents/1/chat", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/api/v1/health", 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_starlette_errors_use_the_envelope(server, method, path, status, code):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"]
    if status == 405:
        assert "POST" in response.headers["allow"] or "GET" in response.headers["allow"]


def test_oversized_body_is_413_in_the_envelope(client):  # type: ignore[no-untyped-def]
    big = b'{"message": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/api/v1/agents/1/chat", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_oversized_chunked_body_without_length_is_413(client):  # type: ignore[no-untyped-def]
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"message": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = client.post("/api/v1/agents/1/chat", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_client_request_id_is_echoed(client):  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/agents/1/chat", json={"message": "hi"}, headers={"x-request-id": "abc-123 x"})
    assert response.headers["x-request-id"] == "abc-123 x"


@pytest.mark.parametrize("supplied", ["x" * 129, "tab\tinside", "caf\u00e9"])
def test_an_unacceptable_request_id_is_replaced(server, supplied):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.get("/api/v1/health", headers=[(b"x-request-id", supplied.encode("utf-8"))])
    assert response.headers["x-request-id"] != supplied
    assert response.headers["x-request-id"].startswith("req_")


def test_every_response_has_a_fresh_request_id(server):  # type: ignore[no-untyped-def]
    with server.client() as http:
        ids = {http.get("/api/v1/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_errors_carry_the_request_id_too(server):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.post("/api/v1/agents/1/chat", json={}, headers={"x-request-id": "trace-1"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "trace-1"


def test_a_raw_socket_garbage_request_does_not_crash_the_server(live_server):  # type: ignore[no-untyped-def]
    import socket

    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        sock.recv(1024)
    assert httpx.get(live_server.base_url + "/api/v1/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/agents/2", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("PUT", "/api/v1/agents", {"GET", "HEAD", "POST"}),
        ("POST", "/api/v1/agents/1/conversations/c1", {"GET", "HEAD", "DELETE"}),
        ("GET", "/api/v1/agents/1/chat", {"POST"}),
    ],
)
def test_a_wrong_method_is_told_every_method_the_path_allows(server, method, path, allowed):  # type: ignore[no-untyped-def]
    with server.client() as http:
        response = http.request(method, path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/agents/1/chat/"), ("GET", "/api/v1/agents/")])
def test_a_trailing_slash_is_an_unknown_route_not_a_redirect(server, method, path):  # type: ignore[no-untyped-def]
    # A redirect would lose a POST body and put the client's own Host header into Location.
    with server.client() as http:
        response = http.request(method, path, headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


def test_a_client_that_leaves_mid_body_is_logged_as_a_disconnect_not_an_error(live_server, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="chatspark")
    key = live_server.key()
    head = (
        "POST /api/v1/agents/1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"message": "hel')  # 16 of the 100 bytes promised
    deadline = time.monotonic() + 10
    while not (access := [r for r in caplog.records if r.name == "chatspark.access" and "/chat" in r.getMessage()]):
        assert time.monotonic() < deadline, "no access line for the abandoned request"
        time.sleep(0.05)
    assert " 500 " not in access[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert any(r.levelno == logging.INFO and "disconnect" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json", ""]
)
def test_a_body_that_says_it_is_not_json_is_refused_with_415(client, content_type):  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/v1/agents/1/chat", content=b'{"message": "hi"}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE" and "application/json" in error["message"]


def test_two_content_types_are_refused_with_415(client):  # type: ignore[no-untyped-def]
    headers = [(b"content-type", b"application/json"), (b"content-type", b"text/plain")]
    response = client.post("/api/v1/agents", content=b'{"name": "Twice"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=UTF-8", "application/vnd.chat+json"]
)
def test_json_media_types_and_a_missing_content_type_are_accepted(client, content_type):  # type: ignore[no-untyped-def]
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/v1/agents/1/chat", content=b'{"message": "hi"}', headers=headers)
    assert response.status_code == 200, response.text


def test_two_authorization_headers_are_a_validation_error_not_first_one_wins(server, key):  # type: ignore[no-untyped-def]
    with server.client() as http:
        for second in (key, "Bearer cs_live_" + "a" * 40):
            headers = [(b"authorization", f"Bearer {key}".encode()), (b"authorization", second.encode())]
            response = http.get("/api/v1/agents", headers=headers)
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "VALIDATION_ERROR" and list(error["details"]["fields"]) == ["Authorization"]
            assert "x-ratelimit-limit" not in response.headers  # no key was accepted


def test_a_whole_number_written_as_5_0_is_an_integer(client):  # type: ignore[no-untyped-def]
    # JSON has one number 5 however it is spelled, and the OpenAPI document's `integer` admits 5.0.
    created = client.post("/api/v1/agents", json={"name": "Floats", "historyTurns": 5.0, "historyTokens": 1e3})
    assert created.status_code == 201, created.text
    assert (created.json()["agent"]["historyTurns"], created.json()["agent"]["historyTokens"]) == (5, 1000)
    refused = client.post("/api/v1/agents", json={"name": "Floats", "historyTurns": 5.5})
    assert refused.status_code == 400
    assert list(refused.json()["error"]["details"]["fields"]) == ["historyTurns"]
