"""What every response shares: health, the error envelope on Starlette's own errors, request ids."""

from __future__ import annotations

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
