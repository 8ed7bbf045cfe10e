"""Structured logs: `--log-format json` (and CHATSPARK_LOG_FORMAT, as `uvicorn app:app` reads it)
writes one JSON object per line, one access line per request with its facts, never a key and no
message text."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatspark import logs
from chatspark.config import DEFAULT_PATH, Config
from tests.conftest import AppServer, free_port, make_config
from tests.fake_openai import reply

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SECRET_MESSAGE = "my purple elephant 7731 password"


class Served(AppServer):
    """A `chatspark serve` or `uvicorn app:app` process on the shipped config (direct OpenAI backend)."""

    def __init__(self, config: Config, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.config = config
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(self.port)], env={**os.environ, **env},
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **options)

    def stop(self) -> list[dict[str, Any]]:
        """Stops the process (SIGTERM, so it flushes) and returns its log, every line parsed as JSON."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        lines = [line for line in self.log_path.read_text().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # a line that is not JSON fails here


@pytest.fixture
def serve(redis_url: str, key_prefix: str, tmp_path: Path, fake_openai: Any) -> Iterator[Any]:
    started: list[Served] = []
    config_file = tmp_path / "config.toml"
    config_file.write_text(DEFAULT_PATH.read_text().replace('backend = "litellm"', 'backend = "openai"'))
    env = {
        "CHATSPARK_CONFIG": str(config_file), "REDIS_URL": redis_url, "CHATSPARK_REDIS_PREFIX": key_prefix,
        "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "CHATSPARK_DRAIN_SECONDS": "0",
    }

    def start(command: list[str], **extra_env: str) -> Served:
        served = Served(make_config(redis_url, key_prefix), command, {**env, **extra_env},
                        tmp_path / f"server-{len(started)}.log")
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
        served._log.close()


def access_line(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [line for line in lines if line["logger"] == "chatspark.access" and line["request_id"] == request_id]
    assert len(found) == 1, f"one access line per request, got {found}"
    return found[0]


def test_json_logs_carry_each_requests_facts_and_no_key_or_message_text(serve, fake_openai):  # type: ignore[no-untyped-def]
    served = serve(["chatspark.cli", "serve", "--log-format", "json"])
    key = served.key()
    with served.client(key) as http:
        answer = http.post("/api/v1/agents/2/chat", json={"message": SECRET_MESSAGE},
                           headers={"x-request-id": "log-json-1", "traceparent": TRACEPARENT})
        assert answer.status_code == 200
        fake_openai.enqueue(reply("one two three", gap=0.05))
        body = {"message": SECRET_MESSAGE + " again", "stream": True}
        streamed = http.post("/api/v1/agents/2/chat", json=body,
                             headers={"x-request-id": "log-json-2", "idempotency-key": "log-idem-1"})
        replayed = http.post("/api/v1/agents/2/chat", json=body,
                             headers={"x-request-id": "log-json-3", "idempotency-key": "log-idem-1"})
        assert streamed.status_code == replayed.status_code == 200
        assert replayed.headers["idempotent-replayed"] == "true"
        bad_trace = http.get("/api/v1/agents", headers={"x-request-id": "log-json-4", "traceparent": b"00-\xe2\x80\xa8 forged"})
        assert bad_trace.status_code == 200
        unknown = http.get("/api/v1/agents/2/nothing-here", headers={"x-request-id": "log-json-5"})
        assert unknown.status_code == 404
        fake_openai.enqueue(reply("a b c d e f g h i j", gap=1.0))
        with http.stream("POST", "/api/v1/agents/2/chat", json={"message": "Leave early", "stream": True},
                         headers={"x-request-id": "log-json-6"}) as leaving:
            next(leaving.iter_lines())  # the first ping; then the client hangs up mid-answer
    time.sleep(1)  # the server notices the disconnect and writes the line
    lines = served.stop()
    raw = served.log_path.read_text()

    assert key not in raw and key[8:20] not in raw
    assert "purple elephant" not in raw  # neither the question nor the echoed answer
    assert answer.json()["text"] not in raw

    first = access_line(lines, "log-json-1")
    assert first["route"] == "/api/v1/agents/{agent_id}/chat"
    assert first["path"] == "/api/v1/agents/2/chat"
    assert first["method"] == "POST" and first["status"] == 200 and first["level"] == "info"
    assert first["agent"] == 2 and first["model"] == answer.json()["model"]
    assert first["prompt_tokens"] == answer.json()["usage"]["promptTokens"]
    assert first["completion_tokens"] == answer.json()["usage"]["completionTokens"]
    assert first["latency_ms"] > 0 and first["traceparent"] == TRACEPARENT
    assert "ttft_ms" not in first and "idempotent" not in first and "client_disconnected" not in first

    stream = access_line(lines, "log-json-2")
    assert stream["idempotent"] is True and "replayed" not in stream
    assert 0 < stream["ttft_ms"] < stream["latency_ms"]
    assert stream["completion_tokens"] == 3
    replay = access_line(lines, "log-json-3")
    assert replay["idempotent"] is True and replay["replayed"] is True

    assert "traceparent" not in access_line(lines, "log-json-4")
    assert access_line(lines, "log-json-5")["route"] == "unmatched"
    left = access_line(lines, "log-json-6")
    assert left["client_disconnected"] is True
    assert left["latency_ms"] < 5000  # the ten-second answer was cut off, not waited for
    # The process's own lines (uvicorn's start and stop, our ready line) are JSON objects too.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert any(line["msg"].startswith("ready:") for line in lines)


def test_uvicorn_app_reads_the_log_format_from_the_environment(serve):  # type: ignore[no-untyped-def]
    served = serve(["uvicorn", "app:app"], CHATSPARK_LOG_FORMAT="json")
    with served.client() as http:
        assert http.get("/api/v1/health", headers={"x-request-id": "uvicorn-json-1"}).status_code == 200
    lines = served.stop()
    health = access_line(lines, "uvicorn-json-1")
    assert health["route"] == "/api/v1/health" and health["status"] == 200
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # ours is the one access line


def test_text_is_the_default_with_the_facts_appended(serve):  # type: ignore[no-untyped-def]
    served = serve(["chatspark.cli", "serve"])
    with served.client(served.key()) as http:
        http.post("/api/v1/agents/1/chat", json={"message": SECRET_MESSAGE}, headers={"x-request-id": "text-1"})
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=30)
    access = [line for line in served.log_path.read_text().splitlines() if "chatspark.access [text-1]" in line]
    assert len(access) == 1
    assert "POST /api/v1/agents/1/chat 200" in access[0]
    assert "route=/api/v1/agents/{agent_id}/chat" in access[0] and "agent=1 model=local" in access[0]
    assert "purple elephant" not in served.log_path.read_text()


@pytest.fixture
def configured_logs() -> Iterator[None]:
    """`logs.configure` changes process-wide loggers: put them back for the tests after this one."""
    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("chatspark", "uvicorn", "uvicorn.error") for lg in [logging.getLogger(name)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)
    logs._written_by = None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_line_written_directly_is_the_line_the_formatter_writes(configured_logs, log_format):  # type: ignore[no-untyped-def]
    logs.configure("info", log_format)  # type: ignore[arg-type]
    handler = logging.getLogger("chatspark").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    fields = {"method": "POST", "path": "/api/v1/agents/2/chat?x=%0A", "route": "/api/v1/agents/{agent_id}/chat",
              "status": 200, "latency_ms": 12.3, "agent": 2, "model": "gpt-4o-mini", "prompt_tokens": 0,
              "idempotent": True, "traceparent": TRACEPARENT}
    tokens = logs.begin_request("req-direct-1", logs.RequestFacts())
    try:
        logs.access("POST", fields["path"], 200, 12.3, fields)
        direct = stream.getvalue()
        seen: list[logging.LogRecord] = []
        handler.addFilter(lambda record: seen.append(record) or True)  # another filter: through `logging` now
        logs.access("POST", fields["path"], 200, 12.3, fields)
    finally:
        logs.end_request(tokens)
    through = stream.getvalue()[len(direct):]
    assert len(seen) == 1 and seen[0].name == "chatspark.access"  # the second line did take the long way
    assert direct.count("\n") == through.count("\n") == 1
    if log_format == "json":
        first, second = json.loads(direct), json.loads(through)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
        assert list(first) == list(second)  # same keys, same order
        first.pop("ts"), second.pop("ts")
        assert first == second and first["msg"] == "POST /api/v1/agents/2/chat?x=%0A 200 12.3ms"
    else:
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
        assert re.match(stamp, direct) and re.match(stamp, through)
        assert direct[24:] == through[24:]
        assert direct[24:].startswith("INFO chatspark.access [req-direct-1] POST /api/v1/agents/2/chat?x=%0A 200 12.3ms route=")


def test_the_access_line_reaches_a_capturing_handler_through_logging(configured_logs):  # type: ignore[no-untyped-def]
    # Nothing configured (an app built by create_app in a test): the line is a LogRecord as before.
    logs._written_by = None
    seen: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger("chatspark")
    root.handlers[:], root.propagate = [capture], False
    root.setLevel(logging.INFO)
    logs.access("GET", "/api/v1/health", 0, 0.4, {"method": "GET", "status": None})
    assert [r.getMessage() for r in seen] == ["GET /api/v1/health - 0.4ms"]
    root.setLevel(logging.WARNING)
    logs.access("GET", "/api/v1/health", 200, 0.4, {})
    assert len(seen) == 1  # below info: no line at all


def test_the_drain_and_shutdown_lines_carry_no_running_requests_id(configured_logs):  # type: ignore[no-untyped-def]
    # A signal handler runs in whatever context the main thread is in when the signal lands: often
    # a request's task. raise_signal lands it right here, inside a context that holds a request id.
    from chatspark.draining import Drain  # noqa: PLC0415

    assert threading.current_thread() is threading.main_thread()  # signal handlers live there
    seen: list[tuple[str, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), record.request_id))  # type: ignore[attr-defined]

    kept = Keep()
    kept.addFilter(logs._RequestIdFilter())
    logger = logging.getLogger("chatspark")
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        shut_down = asyncio.Event()  # uvicorn's handler stands in as the one the drain chains to
        before = signal.signal(signal.SIGTERM, lambda sig, frame: loop.call_soon_threadsafe(shut_down.set))
        try:
            Drain(app=None, drain_seconds=1).install()  # type: ignore[arg-type]
            token = logs.request_id.set("req_running")
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                logs.request_id.reset(token)
            await asyncio.wait_for(shut_down.wait(), 10)
        finally:
            signal.signal(signal.SIGTERM, before)

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(kept)
    drain_lines = [(m, rid) for m, rid in seen if m.startswith(("SIGTERM: draining", "drained ("))]
    assert len(drain_lines) == 2, seen
    assert {rid for _, rid in drain_lines} == {"-"}
