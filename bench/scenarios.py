"""The scenarios, the same work shaped for each kind of target, and one function per kind of run.

A Chatspark turn sends the fake: the agent's instructions, the window of stored history, the new
message. The fake direct and LiteLLM proxy get that same message list in one OpenAI-shaped body, so
every target makes the fake do the same work; what differs is what each adds on the way.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench import procstat
from bench.fake_upstream import ANSWER
from bench.targets import ROOT, VENV_BIN, Redis, Server, workdir

PERSONALITY = "You are a friendly support assistant for Example Inc. Keep answers short."
MESSAGE = "Hello! What are your opening hours, and can I reach you by email?"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    model: str  # the fake's knobs ride in the model name (see bench.fake_upstream)
    stream: bool = False
    history: int = 0  # stored messages the model sees (user + assistant = 2 per turn)
    agent: int = 1


SCENARIOS = [
    Scenario("new", "new conversation", "bench", agent=1),
    Scenario("hist20", "20-message history", "bench", history=20, agent=2),
    Scenario("hist100", "100-message history", "bench", history=100, agent=3),
    Scenario("stream200", "200-chunk stream, unpaced", "bench-c200", stream=True, agent=4),
    Scenario("stream200p", "200-chunk stream, paced 1 ms", "bench-c200-g1", stream=True, agent=5),
    Scenario("stream1", "1-chunk stream (base for per-chunk CPU)", "bench-c1", stream=True, agent=6),
    # 10 s each, so that streams opened over the 2 s ramp are all open together for a while.
    Scenario("slow", "concurrent slow streams (40 chunks, 250 ms apart)", "bench-c40-g250", stream=True, agent=7),
]
BY_KEY = {s.key: s for s in SCENARIOS}


def agents() -> list[dict[str, Any]]:
    return [{"id": s.agent, "name": s.title.replace('"', ""), "model": s.model,
             "history_turns": max(1, s.history // 2)} for s in SCENARIOS]


def openai_messages(s: Scenario) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": PERSONALITY}]
    for _ in range(s.history // 2):
        messages += [{"role": "user", "content": MESSAGE}, {"role": "assistant", "content": ANSWER}]
    return messages + [{"role": "user", "content": MESSAGE}]


def request_spec(server: Server, s: Scenario, conversations: list[str] | None = None) -> dict[str, Any]:
    """What the load generator sends `server` for one turn of `s`."""
    base = {"host": "127.0.0.1", "port": server.port, "headers": server.headers}
    if server.kind == "chatspark":
        body: dict[str, Any] = {"message": MESSAGE}
        if s.stream:
            body["stream"] = True
        return {**base, "path": f"/api/v1/agents/{s.agent}/chat", "body": body, "conversations": conversations or []}
    body = {"model": s.model, "messages": openai_messages(s), "temperature": 0.2, "max_tokens": 4096}
    if s.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return {**base, "path": "/v1/chat/completions", "body": body}


# --- running the load generator ----------------------------------------------------------------


class Probe:
    """Counters read at the load generator's MARK lines: server CPU and RSS, Redis calls."""

    def __init__(self, server: Server, redis: Redis | None) -> None:
        self.server, self.redis = server, redis
        self.pids = server.pids()

    def read(self) -> dict[str, Any]:
        return {"t": time.perf_counter(), "cpu": procstat.cpu_seconds(self.pids), "rss": procstat.rss_bytes(self.pids),
                "redis": self.redis.counters() if self.redis is not None else {}}


def loadgen(job: dict[str, Any], probe: Probe | None = None, timeout: float = 180) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs one job in a load-generator process; returns its result and the probe readings by mark."""
    result_path = workdir() / f"loadgen-{time.monotonic_ns()}.json"
    proc = subprocess.Popen([str(VENV_BIN / "python"), "-m", "bench.loadgen"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({**job, "result_path": str(result_path)}))
    proc.stdin.close()
    watchdog = threading.Timer(timeout, proc.kill)  # a generator that hangs silently still ends
    watchdog.start()
    marks: dict[str, Any] = {}
    try:
        for line in proc.stdout:
            if line.startswith("MARK "):
                marks[line[5:].strip()] = probe.read() if probe is not None else {"t": time.perf_counter()}
        proc.wait(30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator {job['mode']} failed with exit code {proc.returncode}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return result, marks


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(server: Server, s: Scenario, count: int) -> list[str]:
    """`count` conversations that already hold `s.history` messages (Chatspark only; others are stateless)."""
    if server.kind != "chatspark" or s.history == 0:
        return []
    job = {"mode": "seed", "target": request_spec(server, s), "conversations": count,
           "turns": s.history // 2}
    return loadgen(job, timeout=300)[0]["conversations"]


def paired(floor: Server, server: Server, s: Scenario, pairs: int, conversations: list[str]) -> dict[str, Any]:
    """Alternating direct/through requests, one at a time; the paired differences are what `server` adds."""
    job = {"mode": "paired", "direct": request_spec(floor, s), "through": request_spec(server, s, conversations[:1]),
           "pairs": pairs, "warmup": max(1, pairs // 10)}
    result, _ = loadgen(job)
    direct, through = result["direct"], result["through"]
    bad = sum(1 for r in through if r["status"] != 200)
    out: dict[str, Any] = {"pairs": len(through), "errors": bad,
                           "latency_p50": statistics.median(r["latency"] for r in through)}
    added = [t["latency"] - d["latency"] for d, t in zip(direct, through)]
    out["added_p50"], out["added_p99"] = quantile(added, 0.5), quantile(added, 0.99)
    if s.stream:
        ttft = [t["ttft"] - d["ttft"] for d, t in zip(direct, through) if t["ttft"] is not None and d["ttft"] is not None]
        out["added_ttft_p50"], out["added_ttft_p99"] = quantile(ttft, 0.5), quantile(ttft, 0.99)
        gaps = [t["gap_mean"] - d["gap_mean"] for d, t in zip(direct, through)
                if t["gap_mean"] is not None and d["gap_mean"] is not None]
        out["added_gap_mean"] = quantile(gaps, 0.5)
        out["events"] = statistics.median(r["events"] for r in through)
    return out


def closed(server: Server, s: Scenario, concurrency: int, seconds: float, conversations: list[str],
           redis: Redis | None) -> dict[str, Any]:
    """Back-to-back turns on `concurrency` connections: turns/s, CPU per turn, Redis calls per turn."""
    probe = Probe(server, redis if server.kind == "chatspark" else None)
    job = {"mode": "closed", "target": request_spec(server, s, conversations), "concurrency": concurrency,
           "seconds": seconds}
    result, marks = loadgen(job, probe)
    start, stop = marks["start"], marks["stop"]
    turns = max(1, result["statuses"].get("200", 0))
    out = {"turns_per_s": result["count"] / result["elapsed"], "ok": result["statuses"].get("200", 0),
           "non_200": result["count"] - result["statuses"].get("200", 0), "failures": result["failures"],
           "cpu_per_turn": (stop["cpu"] - start["cpu"]) / turns,
           "p50": quantile(result["latencies"], 0.5), "p99": quantile(result["latencies"], 0.99)}
    if start["redis"]:
        delta = {k: stop["redis"].get(k, 0) - start["redis"].get(k, 0) for k in stop["redis"]}
        # INFO itself is a command of ours: one `info` per reading, read twice between the marks.
        delta["info"] = max(0, delta.get("info", 0) - 2)
        reads = delta.pop("reads", 0) - 2
        out["redis_round_trips_per_turn"] = reads / turns
        out["redis_commands_per_turn"] = sum(v for v in delta.values()) / turns
        out["redis_commands"] = {k: round(v / turns, 2) for k, v in sorted(delta.items()) if v > 0}
    return out


def open_loop(server: Server, s: Scenario, rate: float, seconds: float) -> dict[str, Any]:
    job = {"mode": "open", "target": request_spec(server, s), "rate": rate, "seconds": seconds}
    result, _ = loadgen(job)
    lat = result["latencies"]
    return {"rate": rate, "sent": result["sent"], "dropped": result["dropped"], "errors": result["errors"],
            "non_200": sum(v for k, v in result["statuses"].items() if k != "200"),
            "achieved": len(lat) / result["elapsed"], "p50": quantile(lat, 0.5), "p99": quantile(lat, 0.99),
            "generator_lag_p99": result["lag_p99"], "connections": result["connections"]}


def slow_streams(server: Server, s: Scenario, count: int) -> dict[str, Any]:
    """`count` streams open at once: RSS per open stream, stalls, TTFT under that load."""
    probe = Probe(server, None)
    idle = probe.read()
    # Bounded: a target that cannot keep them all open gets 8 s to try and 18 s to finish (10 s
    # streams); what it has not finished by then is counted as unfinished.
    job = {"mode": "streams", "target": request_spec(server, s), "count": count, "ramp_seconds": 2.0,
           "open_timeout": 6, "hold_seconds": 0.3, "timeout": 18}
    result, marks = loadgen(job, probe, timeout=60)
    results = result["results"]
    done = [r for r in results if r["status"] == 200 and r["events"] >= 40]
    gap_max = [r["gap_max"] for r in done if r["gap_max"] is not None]
    ttft = [r["ttft"] for r in done if r["ttft"] is not None]
    opened = marks.get("open", idle)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    streaming = max(1, result["streaming_at_mark"])
    return {"count": count, "complete": len(done), "failed": count - len(done), "failures": result["failures"],
            "statuses": statuses, "unfinished": result["unfinished"], "all_open_after_s": result["open_after"],
            "in_flight_at_sample": result["in_flight_at_mark"], "streaming_at_sample": result["streaming_at_mark"],
            "rss_idle_mb": idle["rss"] / 1e6, "rss_open_mb": opened["rss"] / 1e6,
            # Per stream that was streaming when RSS was read: all of them, unless the target fell
            # behind; then requests it queued count too, and this is an upper bound.
            "rss_per_stream_kb": (opened["rss"] - idle["rss"]) / streaming / 1024,
            # The fake sends a chunk every 250 ms: a gap of a second or more is a stall.
            "stalled": sum(1 for g in gap_max if g >= 1.0), "gap_max": max(gap_max) if gap_max else None,
            "ttft_p50": quantile(ttft, 0.5), "ttft_p99": quantile(ttft, 0.99)}
