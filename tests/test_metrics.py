"""GET /metrics: off the public API (a bearer token, or a port of its own), the series a Prometheus
scrape needs, low-cardinality labels, and one sum over `serve --workers 2`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

import chatspark.knowledge.extract  # noqa: F401  (trafilatura's import warns once; at collection, not mid-test under -W error)
from chatspark.config import DEFAULT_PATH, MetricsConfig
from tests.conftest import InProcessServer, RunningServer, free_port, make_config
from tests.fake_openai import error, reply
from tests.test_webhooks import app, http, new_agent, receiver, register, start_app, wait_for_deliveries  # noqa: F401  (fixtures)

TOKEN = "csm_test-metrics-token-0123456789"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
CHAT = "/api/v1/agents/{agent_id}/chat"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in all_samples.items() if n == name and wanted <= ls)


@pytest.fixture(scope="module")
def metered(redis_url: str, key_prefix: str, shared_fake_openai: Any) -> Iterator[InProcessServer]:
    """The app with a metrics token configured, its provider models on the fake provider."""
    config = make_config(redis_url, key_prefix, shared_fake_openai.base_url)
    # The direct OpenAI-compatible backend: litellm's import (seconds, more on a busy machine) is
    # not what these tests measure.
    models = {name: msgspec.structs.replace(model, backend="openai") if model.backend == "litellm" else model
              for name, model in config.models.items()}
    config = msgspec.structs.replace(config, models=models, metrics=MetricsConfig(token_sha256=DIGEST))
    running = InProcessServer(config).start()
    yield running
    running.stop()


@pytest.fixture
def scrape(metered: InProcessServer, fake_openai: Any, provider_key: str) -> Iterator[Any]:
    with metered.client() as http:

        def get() -> Samples:
            response = http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/plain; version=")
            return samples(response.text)

        yield get


def test_without_a_token_configured_metrics_is_no_route(client):  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


def test_a_scrape_without_the_token_is_refused_with_the_envelope(metered, scrape):  # type: ignore[no-untyped-def]
    api_key = metered.key()
    with metered.client() as http:
        missing = http.get("/metrics")
        wrong = http.get("/metrics", headers={"authorization": "Bearer csm_not-the-token"})
        an_api_key = http.get("/metrics", headers={"authorization": f"Bearer {api_key}"})
        basic = http.get("/metrics", headers={"authorization": f"Basic {TOKEN}"})
        post = http.post("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "API_KEY_MISSING"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["x-request-id"]
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "API_KEY_INVALID"
    assert an_api_key.status_code == 401 and an_api_key.json()["error"]["code"] == "API_KEY_INVALID"
    assert basic.status_code == 401 and basic.json()["error"]["code"] == "API_KEY_MISSING"
    assert post.status_code == 405 and post.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    for refused in (missing, wrong, an_api_key):
        assert "chatspark_" not in refused.text
    assert value(scrape(), "chatspark_http_requests_total", route="/metrics", status="401") >= 4


def test_turns_are_counted_by_route_template_model_and_tokens(metered, scrape, fake_openai):  # type: ignore[no-untyped-def]
    before = scrape()
    with metered.client(metered.key()) as http:
        answer = http.post("/api/v1/agents/2/chat", json={"message": "How much is the growth plan?"}).json()
        fake_openai.enqueue(reply("One two three four", gap=0.05))
        streamed = http.post("/api/v1/agents/2/chat", json={"message": "Count to four", "stream": True})
    assert streamed.status_code == 200
    done = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")][-1]
    model = answer["model"]
    assert done["model"] == model
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chatspark_http_requests_total", route=CHAT, method="POST", status="200") == 2
    assert delta("chatspark_http_request_duration_seconds_count", route=CHAT) == 2
    assert delta("chatspark_tokens_total", model=model, kind="prompt") == (
        answer["usage"]["promptTokens"] + done["usage"]["promptTokens"]
    )
    assert delta("chatspark_tokens_total", model=model, kind="completion") == (
        answer["usage"]["completionTokens"] + done["usage"]["completionTokens"]
    )
    assert delta("chatspark_upstream_duration_seconds_count", model=model) == 2
    assert delta("chatspark_time_to_first_token_seconds_count", model=model) == 1
    # The first of four words came well before the last (3 gaps of 50 ms): TTFT is not the whole turn.
    ttft = delta("chatspark_time_to_first_token_seconds_sum", model=model)
    assert 0 < ttft < 5
    assert delta("chatspark_store_duration_seconds_count") >= 4  # each turn: open, append at least
    assert value(after, "chatspark_open_streams") == 0  # the stream is over


def test_upstream_failures_rejections_and_replays_are_counted(metered, scrape, fake_openai):  # type: ignore[no-untyped-def]
    before = scrape()
    limited = metered.key(rate_limit=1)
    with metered.client(limited) as http:
        assert http.get("/api/v1/agents").status_code == 200
        assert http.get("/api/v1/agents").status_code == 429
    with metered.client(metered.key()) as http:
        fake_openai.enqueue(error(500))
        failed = http.post("/api/v1/agents/2/chat", json={"message": "Hello?"})
        body = {"message": "Once only"}
        first = http.post("/api/v1/agents/2/chat", json=body, headers={"idempotency-key": "metrics-replay-1"})
        again = http.post("/api/v1/agents/2/chat", json=body, headers={"idempotency-key": "metrics-replay-1"})
    assert failed.status_code == 502
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chatspark_http_errors_total", code="RATE_LIMIT_EXCEEDED") == 1
    assert delta("chatspark_http_errors_total", code="UPSTREAM_ERROR") == 1
    assert delta("chatspark_upstream_errors_total", error="ProviderError") == 1
    assert delta("chatspark_idempotent_requests_total", state="new") == 1
    assert delta("chatspark_idempotent_requests_total", state="done") == 1


def test_labels_hold_route_templates_never_ids_or_keys(metered, scrape):  # type: ignore[no-untyped-def]
    key = metered.key()
    with metered.client(key) as http:
        turn = http.post("/api/v1/agents/1/chat", json={"message": "When are you open?"}).json()
        conversation = turn["conversationId"]
        assert http.get(f"/api/v1/agents/1/conversations/{conversation}").status_code == 200
        assert http.get(f"/api/v1/agents/1/conversations/{conversation}/messages").status_code == 200
        assert http.get("/no/such/path/secret-4f1c9b").status_code == 404
        assert http.get(f"/api/v1/agents/1/chat/{conversation}").status_code == 404
    all_samples = scrape()
    templates = {route.path for route in _routes(metered)} | {"/metrics", "unmatched"}
    label_values = {v for (_, labels) in all_samples for _, v in labels}
    for forbidden in (conversation, key, key[:16], "secret-4f1c9b", "/api/v1/agents/1"):
        assert not [v for v in label_values if forbidden in v and v not in templates], forbidden
    routes = {v for (_, labels) in all_samples for k, v in labels if k == "route"}
    assert routes <= templates, routes - templates
    assert "/api/v1/agents/{agent_id}/conversations/{conversation_id}" in routes
    assert "unmatched" in routes
    # Bounded: every label set of every series comes from fixed lists (routes, methods, statuses,
    # models, codes, outcomes): well under a thousand series whatever the traffic.
    assert len(all_samples) < 2000


def test_training_jobs_and_store_failures_are_counted(metered, scrape, unreachable_redis_url):  # type: ignore[no-untyped-def]
    before = scrape()
    with metered.client(metered.key()) as http:
        made = http.post("/api/v1/agents", json={"name": "metrics-kb", "model": "local"})
        agent = f"/api/v1/agents/{made.json()['agent']['id']}"
        text = "The Hub 3000 carries a five year warranty. " * 20
        created = http.post(f"{agent}/training", json={"source": "metrics-kb", "type": "text", "data": text})
        assert created.status_code in (200, 201, 202), created.text
        training_id = created.json()["source"]["id"]
        deadline = time.monotonic() + 60
        while http.get(f"{agent}/training/{training_id}").json()["source"]["status"] != "completed":
            assert time.monotonic() < deadline, "the source was not indexed in 60 s"
            time.sleep(0.1)
    time.sleep(0.2)  # the worker counts the job right after marking it completed
    middle = scrape()
    # At least ours (the configured help-center seed may complete meanwhile too).
    assert value(middle, "chatspark_training_jobs_total", outcome="completed") - value(
        before, "chatspark_training_jobs_total", outcome="completed") >= 1
    assert value(middle, "chatspark_training_job_duration_seconds_count") > value(
        before, "chatspark_training_job_duration_seconds_count")

    # A round trip to a Redis that is not there: counted by error class, then answered as a 503.
    from chatspark.store.config import StoreConfig
    from chatspark.store.connection import connect
    from chatspark.store.errors import StoreUnavailable

    async def ping_nothing() -> None:
        connection = connect(StoreConfig(url=unreachable_redis_url, connect_timeout_seconds=0.5))
        try:
            with pytest.raises(StoreUnavailable):
                await connection.ping()
        finally:
            await connection.aclose()

    import asyncio

    asyncio.run(ping_nothing())
    after = scrape()
    assert value(after, "chatspark_store_errors_total") - value(middle, "chatspark_store_errors_total") == 1
    assert value(after, "chatspark_store_errors_total", error="ConnectionError") == value(
        middle, "chatspark_store_errors_total", error="ConnectionError") + 1


def test_open_streams_count_a_stream_while_it_runs(redis_url, key_prefix, fake_openai, provider_key):  # type: ignore[no-untyped-def]
    config = make_config(redis_url, key_prefix, fake_openai.base_url)
    models = {name: msgspec.structs.replace(model, backend="openai") if model.backend == "litellm" else model
              for name, model in config.models.items()}
    live = RunningServer(msgspec.structs.replace(config, models=models, metrics=MetricsConfig(token_sha256=DIGEST)))
    live.start()
    try:
        def open_streams() -> float:
            scraped = httpx.get(f"{live.base_url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
            return value(samples(scraped.text), "chatspark_open_streams")

        idle = open_streams()
        fake_openai.enqueue(reply("slow words come one by one", gap=0.3))
        with live.client(live.key()) as http, http.stream(
            "POST", "/api/v1/agents/2/chat", json={"message": "Go slowly", "stream": True}
        ) as streaming:
            lines = streaming.iter_lines()
            while not next(lines).startswith("data: {"):
                pass
            assert open_streams() == idle + 1
            for _ in lines:
                pass
        deadline = time.monotonic() + 5
        while open_streams() != idle:
            assert time.monotonic() < deadline, "the finished stream is still counted"
            time.sleep(0.05)
    finally:
        live.stop()


def test_webhook_deliveries_are_counted_by_outcome_with_their_lag(http, receiver):  # type: ignore[no-untyped-def]
    """The webhook suite's app and receiver; this process's registry read directly (the app runs here)."""
    from chatspark import metrics

    def now() -> Samples:
        return samples(metrics.render()[0].decode())

    before = now()
    agent = new_agent(http)
    webhook, _ = register(http, receiver.plan("/metered", 500, 200), ["agent.updated"])
    assert http.patch(f"/api/v1/agents/{agent}", json={"botName": "Counted"}).status_code == 200
    wait_for_deliveries(http, webhook["id"], ["delivered"])
    after = now()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chatspark_webhook_deliveries_total", outcome="retry") == 1
    assert delta("chatspark_webhook_deliveries_total", outcome="ok") == 1
    assert delta("chatspark_webhook_delivery_lag_seconds_count") == 2
    assert 0 <= delta("chatspark_webhook_delivery_lag_seconds_sum") < 10


def _routes(server: InProcessServer) -> list[Any]:
    app = server._app.app  # RequestContext -> Drain -> Starlette
    while not hasattr(app, "routes"):
        app = app.app
    return list(app.routes)


# --- `chatspark serve`: two workers, and the metrics port -----------------------------------------


def _config_file(tmp_path: Path, extra: str, workers: int = 2) -> Path:
    shipped = DEFAULT_PATH.read_text().replace('backend = "litellm"', 'backend = "openai"')
    text = re.sub(r"(?m)^workers = 1$", f"workers = {workers}", shipped)
    path = tmp_path / "metrics-config.toml"
    path.write_text(text + "\n" + extra)
    return path


def test_two_workers_answer_a_scrape_with_the_sum_of_both(spawn_server, tmp_path, shared_fake_openai):  # type: ignore[no-untyped-def]
    folder = tmp_path / "multiproc"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left over by an earlier run")  # emptied at start
    config = _config_file(tmp_path, f'[metrics]\ntoken_sha256 = "{DIGEST}"\n')
    server = spawn_server(shared_fake_openai.base_url, CHATSPARK_CONFIG=str(config),
                          PROMETHEUS_MULTIPROC_DIR=str(folder))
    requests = 0
    deadline = time.monotonic() + 30  # the second worker may still be starting when the first is ready

    def writers() -> set[str]:
        return {name.split("_")[-1] for name in os.listdir(folder) if name.startswith("counter_")}

    while requests < 40 or len(writers()) < 2:  # a new connection each: the kernel spreads them
        assert time.monotonic() < deadline, f"only one worker counted requests: {sorted(os.listdir(folder))}"
        assert httpx.get(f"{server.base_url}/api/v1/agents", timeout=10).status_code == 401
        requests += 1
    assert "1.db" not in writers()  # the leftover file was removed at start
    seen = set()
    for _ in range(6):  # whichever worker answers, it reports both workers' requests
        response = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200
        counted = value(samples(response.text), "chatspark_http_requests_total", route="/api/v1/agents", status="401")
        seen.add(counted)
    assert seen == {requests}
    refused = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "API_KEY_MISSING"


def test_a_configured_metrics_port_serves_only_metrics(spawn_server, tmp_path, shared_fake_openai):  # type: ignore[no-untyped-def]
    port = free_port()
    config = _config_file(tmp_path, f"[metrics]\nport = {port}\n", workers=1)
    server = spawn_server(shared_fake_openai.base_url, CHATSPARK_CONFIG=str(config))
    assert httpx.get(f"{server.base_url}/api/v1/health", timeout=10).status_code == 200
    on_port = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert on_port.status_code == 200
    assert value(samples(on_port.text), "chatspark_http_requests_total", route="/api/v1/health") >= 1
    api_on_metrics_port = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10)
    assert api_on_metrics_port.status_code == 404
    assert api_on_metrics_port.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    # No token configured: the API port has no /metrics at all.
    assert httpx.get(f"{server.base_url}/metrics", timeout=10).status_code == 404


def test_the_shipped_config_binds_no_metrics_port(spawn_server, shared_fake_openai):  # type: ignore[no-untyped-def]
    """Several `serve` processes start side by side on the shipped configuration."""
    first = spawn_server(shared_fake_openai.base_url)
    second = spawn_server(shared_fake_openai.base_url)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and first.process.poll() is None and second.process.poll() is None:
        time.sleep(0.5)
    assert first.process.poll() is None and second.process.poll() is None


# --- configuration ----------------------------------------------------------------------------------


def test_the_token_hash_comes_from_config_or_environment_and_must_be_a_sha256(tmp_path):  # type: ignore[no-untyped-def]
    from chatspark.config import ConfigError, load_config

    assert load_config(environ={}).metrics == MetricsConfig()  # shipped: off, no port
    assert load_config(environ={"CHATSPARK_METRICS_TOKEN_SHA256": DIGEST.upper()}).metrics.token_sha256 == DIGEST
    with pytest.raises(ConfigError, match="CHATSPARK_METRICS_TOKEN_SHA256"):
        load_config(environ={"CHATSPARK_METRICS_TOKEN_SHA256": TOKEN})  # the token itself, not its hash
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[metrics]\ntoken_sha256 = "{TOKEN}"\n')
    with pytest.raises(ConfigError, match="token_sha256"):
        load_config(plain, environ={})
    same_port = tmp_path / "same-port.toml"
    same_port.write_text("[server]\nport = 8000\n[metrics]\nport = 8000\n")
    with pytest.raises(ConfigError, match="API's port"):
        load_config(same_port, environ={})


def test_metrics_token_prints_a_token_whose_hash_it_prints(capsys):  # type: ignore[no-untyped-def]
    from chatspark.cli import main

    assert main(["metrics-token"]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[-1]
    assert f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"' in "\n".join(out)
