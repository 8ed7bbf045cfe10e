"""Prometheus metrics: every series this service exports, and the one-line calls the seams make.

Labels stay low-cardinality: route templates, models, error codes and outcomes; never a
conversation id, a key, an agent id or a raw path. Under `chatspark serve --workers N` every
worker writes its values to `$PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode,
set up by the serve command) and any worker answers a scrape with the sum over all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

from chatspark import logs

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Requests and turns: 5 ms (health, a cached read) to 2 min (a long stream).
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Redis round trips: sub-millisecond on a LAN, seconds only when something is wrong.
_STORE = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Webhook deliveries and training jobs: seconds to hours behind.
_BACKGROUND = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

HTTP_REQUESTS = Counter(
    "chatspark_http_requests_total", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "chatspark_http_request_duration_seconds",
    "From the request's arrival to its last byte (a stream's whole length), by route template.",
    ["route"], buckets=_LATENCY,
)
HTTP_ERRORS = Counter(
    "chatspark_http_errors_total",
    "Error envelopes answered, by contract code: RATE_LIMIT_EXCEEDED and CREDITS_EXHAUSTED are the "
    "rate-limit and monthly-cap rejections.",
    ["code"],
)
OPEN_STREAMS = Gauge(
    "chatspark_open_streams", "Server-sent event streams open now.", multiprocess_mode="livesum"
)
FIRST_TOKEN_SECONDS = Histogram(
    "chatspark_time_to_first_token_seconds",
    "From the request's arrival to the model's first text of a streamed turn, by the model answering.",
    ["model"], buckets=_LATENCY,
)
UPSTREAM_SECONDS = Histogram(
    "chatspark_upstream_duration_seconds",
    "One model call (each attempt along the fallback chain; a stream to its end), by model.",
    ["model"], buckets=_LATENCY,
)
UPSTREAM_ERRORS = Counter(
    "chatspark_upstream_errors_total", "Failed model calls, by model and failure kind.", ["model", "error"]
)
TOKENS = Counter(
    "chatspark_tokens_total", "Tokens of answered model calls, by model and kind (prompt, completion).",
    ["model", "kind"],
)
STORE_SECONDS = Histogram(
    "chatspark_store_duration_seconds", "One store round trip (blocking stream reads excluded).", buckets=_STORE
)
STORE_ERRORS = Counter("chatspark_store_errors_total", "Failed store round trips, by error class.", ["error"])
IDEMPOTENT_REQUESTS = Counter(
    "chatspark_idempotent_requests_total",
    "Chat requests with an Idempotency-Key: new (ran the turn), running (followed a running turn), "
    "done (replayed a finished turn).",
    ["state"],
)
TRAINING_JOBS = Counter(
    "chatspark_training_jobs_total", "Ingestion jobs finished by this replica: completed, failed, paused.",
    ["outcome"],
)
TRAINING_SECONDS = Histogram(
    "chatspark_training_job_duration_seconds", "A completed ingestion job, from its start here.", buckets=_BACKGROUND
)
WEBHOOK_DELIVERIES = Counter(
    "chatspark_webhook_deliveries_total", "Webhook delivery attempts: ok, retry (failed, retried later), failed.",
    ["outcome"],
)
WEBHOOK_LAG = Histogram(
    "chatspark_webhook_delivery_lag_seconds",
    "From when a delivery attempt was due (the event, or its scheduled retry) to its start.",
    buckets=_BACKGROUND,
)


def render() -> tuple[bytes, str]:
    """The exposition (body, content type): this process's values, or with `--workers N` every worker's."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drops a finished worker's live gauges (its open streams) from the multiprocess sums."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid)


# --- the seams' one-line calls ------------------------------------------------------------------

# A request's two series, looked up once per label set (a bounded set: templates × methods × statuses).
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def request_done(route: str, method: str, status: int, seconds: float) -> None:
    series = _request_series.get((route, method, status))
    if series is None:
        series = _request_series[(route, method, status)] = (
            HTTP_REQUESTS.labels(route, method, str(status) if status else "-"), HTTP_SECONDS.labels(route)
        )
    series[0].inc()
    series[1].observe(seconds)


def stored(started: float, error: BaseException | None = None) -> None:
    STORE_SECONDS.observe(time.perf_counter() - started)
    if error is not None:
        STORE_ERRORS.labels(type(error).__name__).inc()


@contextmanager
def upstream_call(model: str) -> Iterator[None]:
    """Times one model call and counts its failure by kind (ProviderError, ProviderTimeout, …)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, Exception):
            UPSTREAM_ERRORS.labels(model, type(exc).__name__).inc()
        raise
    finally:
        UPSTREAM_SECONDS.labels(model).observe(time.perf_counter() - started)


def first_token(model: str) -> None:
    """A streamed turn's first text: observed against the request's arrival, and put on its log line."""
    facts = logs.facts()
    if facts is None:
        return
    if facts.ttft_ms is None:
        elapsed = time.perf_counter() - facts.started
        facts.ttft_ms = round(elapsed * 1000, 1)
        FIRST_TOKEN_SECONDS.labels(model).observe(elapsed)


def answered(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """A model call's answer: its tokens counted, the model and tokens put on the request's log line."""
    TOKENS.labels(model, "prompt").inc(prompt_tokens)
    TOKENS.labels(model, "completion").inc(completion_tokens)
    facts = logs.facts()
    if facts is not None:
        facts.model = model
        facts.prompt_tokens = prompt_tokens
        facts.completion_tokens = completion_tokens


def training_completed(started: float) -> None:
    TRAINING_JOBS.labels("completed").inc()
    TRAINING_SECONDS.observe(time.monotonic() - started)


def idempotent(state: str) -> None:
    IDEMPOTENT_REQUESTS.labels(state).inc()
    facts = logs.facts()
    if facts is not None:
        facts.idempotent = True
        facts.replayed = state == "done"
