"""What metrics and access logs cost per request: `.venv/bin/python -m bench.instrumentation`.

Drives `RequestContext` (the outermost middleware: request id, metrics, the access line) around a
trivial ASGI app in one event loop, with the access line written to /dev/null as text or JSON and
with the Prometheus calls swapped for no-ops; then the per-call cost of the seams a turn goes
through (a store round trip, a model call with its tokens, the first token). Each figure is the
median of 7 runs; run it again with `--multiprocess` for `serve --workers N`'s mmap-backed values.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REQUESTS = 10_000
RUNS = 9


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _drive(app: Any, count: int) -> float:
    """CPU microseconds per request through `app` (no sockets, no HTTP parser: the middleware alone)."""
    scope = {"type": "http", "method": "GET", "path": "/api/v1/health", "raw_path": b"/api/v1/health",
             "headers": [(b"host", b"bench"), (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    started = time.process_time()  # CPU time: other processes on a shared machine do not count
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / count * 1e6


def _median(fn: Any) -> float:
    return statistics.median(fn() for _ in range(RUNS))


def _variant(log_format: str | None, with_metrics: bool, direct: bool = True) -> Any:
    """A callable measuring one configuration: µs per request through RequestContext. `direct`
    False sends the access line through `logging` (a LogRecord and the formatter: before issue 17)."""
    from chatspark import logs, metrics
    from chatspark.request_context import RequestContext

    app = RequestContext(_app)
    real = metrics.request_done

    def run() -> float:
        logs.configure("info" if log_format else "warning", log_format or "text")
        handler = logging.getLogger("chatspark").handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(_DEVNULL)
        if not direct:
            logs._written_by = None
        if not with_metrics:
            metrics.request_done = _no_metrics
        try:
            return asyncio.run(_drive(app, REQUESTS))
        finally:
            metrics.request_done = real

    return run


_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 (the bench process ends soon)


def _interleaved(variants: dict[str, Any]) -> dict[str, float]:
    """Each variant once per round, RUNS rounds: drift on a shared machine lands on all of them."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(RUNS):
        for name, run in variants.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def _no_metrics(*args: Any) -> None:
    pass


def _seams() -> dict[str, float]:
    from chatspark import metrics

    def per_call(fn: Any) -> float:
        def run() -> float:
            started = time.process_time()
            for _ in range(REQUESTS):
                fn()
            return (time.process_time() - started) / REQUESTS * 1e6

        return _median(run)

    def model_call() -> None:
        with metrics.upstream_call("gpt-4o-mini"):
            pass
        metrics.answered("gpt-4o-mini", 120, 40)

    return {
        "store round trip (latency observed)": per_call(lambda: metrics.stored(time.perf_counter())),
        "model call (timed, tokens counted)": per_call(model_call),
        "first token (outside a request: no-op)": per_call(lambda: metrics.first_token("gpt-4o-mini")),
    }


def measure() -> list[tuple[str, float]]:
    rows = _interleaved({
        "app alone (no middleware)": lambda: asyncio.run(_drive(_app, REQUESTS)),
        "RequestContext, access line off (level warning), metrics off": _variant(None, False),
        "RequestContext, access line off, metrics on": _variant(None, True),
        "RequestContext, text access line, metrics on": _variant("text", True),
        "RequestContext, JSON access line, metrics on": _variant("json", True),
        "RequestContext, text access line through logging (before), metrics on": _variant("text", True, direct=False),
        "RequestContext, JSON access line through logging (before), metrics on": _variant("json", True, direct=False),
    })
    return [*rows.items(), *_seams().items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--multiprocess", action="store_true", help="values in mmap files, as with --workers N")
    args = parser.parse_args()
    if args.multiprocess and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        with tempfile.TemporaryDirectory() as folder:  # must be set before prometheus_client loads
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
            raise SystemExit(subprocess.call([sys.executable, "-m", "bench.instrumentation", "--multiprocess"], env=env))
    mode = "multiprocess (mmap files)" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single process"
    print(f"| per request or call, µs ({mode}, median of {RUNS} × {REQUESTS}) | µs |\n|---|---:|")
    for name, micros in measure():
        print(f"| {name} | {micros:.2f} |")


if __name__ == "__main__":
    main()
