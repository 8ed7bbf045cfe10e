"""The `chatspark` command as an operator uses it: keys against Redis, and `serve --dev`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CHATSPARK = [sys.executable, "-m", "chatspark.cli"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHATSPARK, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


@pytest.fixture
def cli_env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    """The shipped config with the suite's own key prefix, so the CLI writes only our keys."""
    config = (ROOT / "config.toml").read_text().replace('prefix = "cs"', f'prefix = "{key_prefix}"')
    path = tmp_path / "config.toml"
    path.write_text(config)
    return {**os.environ, "CHATSPARK_CONFIG": str(path), "REDIS_URL": redis_url}


def test_keys_create_prints_the_key_last_and_it_works(cli_env, start_server):  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--test", "--agents", "1", "--scopes", "chat", env=cli_env)
    assert created.returncode == 0, created.stderr
    plain = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"cs_test_[A-Za-z0-9]{40}", plain)
    server = start_server()
    with server.client(plain) as http:
        assert http.post("/api/v1/agents/1/chat", json={"message": "hi"}).status_code == 200
        assert http.post("/api/v1/agents/2/chat", json={"message": "hi"}).json()["error"]["code"] == "AGENT_ACCESS_DENIED"


def test_keys_list_shows_ids_never_keys_and_revoke_revokes(cli_env, start_server):  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--live", "--expires", "30d", "--name", "ci", env=cli_env)
    plain = created.stdout.strip().splitlines()[-1]
    key_id = re.search(r"id: (key_[0-9a-f]+)", created.stdout)[1]
    listed = run("keys", "list", env=cli_env)
    assert key_id in listed.stdout and plain not in listed.stdout and "active" in listed.stdout
    assert run("keys", "revoke", key_id, env=cli_env).returncode == 0
    assert re.search(rf"{key_id}\s+live\s+revoked", run("keys", "list", env=cli_env).stdout)
    server = start_server()
    with server.client(plain) as http:
        assert http.post("/api/v1/agents/1/chat", json={"message": "hi"}).json()["error"]["code"] == "API_KEY_REVOKED"


@pytest.mark.parametrize(
    "args",
    [["--scopes", "root"], ["--expires", "yesterday"], ["--expires", "2001-01-01"], ["--agents", "x"]],
)
def test_keys_create_refuses_bad_options(cli_env, args):  # type: ignore[no-untyped-def]
    result = run("keys", "create", *args, env=cli_env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_keys_create_without_redis_says_so(cli_env, unreachable_redis_url):  # type: ignore[no-untyped-def]
    result = run("keys", "create", env={**cli_env, "REDIS_URL": unreachable_redis_url})
    assert result.returncode == 1
    assert "Redis" in result.stderr and "Traceback" not in result.stderr


def test_serve_dev_without_redis_uses_the_embedded_store_and_prints_a_working_key(cli_env, unreachable_redis_url):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**cli_env, "REDIS_URL": unreachable_redis_url, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*CHATSPARK, "serve", "--dev", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    try:
        output = ""
        deadline = time.monotonic() + 60
        key = None
        while key is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
            match = re.search(r"\b(cs_test_[A-Za-z0-9]{40})\b", line)
            key = match[1] if match else None
        assert key, output
        assert "EMBEDDED" in output
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = httpx.get(base + "/api/v1/health", timeout=30)  # slack for a loaded 2-core machine
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert health.json()["store"] == "embedded"
        headers = {"authorization": f"Bearer {key}"}
        first = httpx.post(base + "/api/v1/agents/1/chat", json={"message": "When are you open?"}, headers=headers,
                           timeout=30)
        assert first.status_code == 200 and "Monday" in first.json()["text"]
        cid = first.json()["conversationId"]
        second = httpx.post(base + "/api/v1/agents/1/chat", json={"message": "and weekends?", "conversationId": cid},
                            headers=headers, timeout=30)
        assert second.status_code == 200 and second.json()["context"]["turnsIncluded"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def test_keys_create_takes_rate_and_cap_presets_and_numbers(cli_env):  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--test", "--rate-limit", "growth", "--monthly-cap", "small", env=cli_env)
    assert created.returncode == 0, created.stderr
    assert "rate limit: 120/min  monthly cap: 25" in created.stdout
    created = run("keys", "create", "--rate-limit", "7", "--monthly-cap", "unlimited", env=cli_env)
    assert "rate limit: 7/min  monthly cap: unlimited" in created.stdout
    refused = run("keys", "create", "--rate-limit", "huge", env=cli_env)
    assert refused.returncode != 0 and "--rate-limit" in refused.stderr


def test_revoking_twice_says_already_revoked(cli_env):  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--test", env=cli_env)
    key_id = re.search(r"id: (key_[0-9a-f]+)", created.stdout)[1]
    assert run("keys", "revoke", key_id, env=cli_env).stdout.strip() == f"revoked {key_id}"
    again = run("keys", "revoke", key_id, env=cli_env)
    assert again.returncode == 0 and again.stdout.strip() == f"already revoked {key_id}"


def test_revoke_never_echoes_a_secret_key_pasted_by_mistake(cli_env):  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--test", env=cli_env)
    plain = created.stdout.strip().splitlines()[-1]
    refused = run("keys", "revoke", plain, env=cli_env)
    assert refused.returncode != 0 and "key id" in refused.stderr
    assert plain not in refused.stdout + refused.stderr and plain[8:20] not in refused.stdout + refused.stderr


def test_bad_agent_ids_get_a_plain_message(cli_env):  # type: ignore[no-untyped-def]
    refused = run("keys", "create", "--agents", "a,b", env=cli_env)
    assert refused.returncode != 0 and "--agents takes agent ids" in refused.stderr
    assert "invalid literal" not in refused.stderr


def test_keys_without_redis_say_how_to_get_a_key_without_log_noise(cli_env, unreachable_redis_url):  # type: ignore[no-untyped-def]
    failed = run("keys", "list", env={**cli_env, "REDIS_URL": unreachable_redis_url})
    assert failed.returncode == 1
    assert failed.stderr.startswith("chatspark: cannot reach Redis") and "dev key" in failed.stderr
    assert "WARNING" not in failed.stderr and "ERROR" not in failed.stderr


def test_serve_on_a_busy_port_fails_at_once_before_printing_a_key(cli_env):  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run("serve", "--dev", "--port", str(port), env=cli_env)
        took = time.monotonic() - started
    assert result.returncode == 1 and "Address already in use" in result.stderr
    assert "cs_test_" not in result.stdout + result.stderr and "Try:" not in result.stdout
    assert took < 8  # it used to wait for the app's startup (litellm's import) first: ~12 s


@pytest.mark.parametrize("port", ["83638", "0", "-1", "http"])
def test_serve_refuses_a_port_outside_1_to_65535(cli_env, port):  # type: ignore[no-untyped-def]
    result = run("serve", "--port", port, env=cli_env)
    assert result.returncode == 2 and "1 to 65535" in result.stderr
