"""Issue 17's budgets: what each feature of this round adds to a turn — CPU, latency p50 and Redis
round trips — in one table, against a plain turn measured in the same run.

    .venv/bin/python -m bench.budgets [--quick]     # writes bench/results/budgets.{md,json}

The app runs in this process (tests/in_process.py: no socket, so the CPU is the app's and the
client's — the client's share is the same on both sides of a row), on a private `redis-server`
(and, for `wait_replicas`, a master with two replicas behind a Sentinel, on loopback). Agents use
the offline `local` model, so the turn itself is cheap and what a feature adds shows. Each row
alternates blocks of turns between the plain turn and the turn with the feature (the order flips
every block, the first block of each is a warm-up): CPU is `time.process_time` per turn, the median
of the blocks; latency is the p50 of every turn's wall time. Round trips are counted at the store's
one seam (`Connection._call`), the fewest of 5 tries (background workers only ever add).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

import chatspark.store.conversations as conversations
from bench import help_site, targets
from bench.widget_cost import ORIGIN, _client, _count_round_trips, _key
from chatspark import logs, metrics
from chatspark.config import Config, load_config
from chatspark.store.layout import Layout
from chatspark.web import create_app
from tests.in_process import InProcessApp

RESULTS = targets.ROOT / "bench" / "results"
# Many short blocks: on a shared machine a slow second lands in one block, and the median drops it.
PLANS = {"full": {"blocks": 30, "turns": 20, "chunks": 10_000},
         "quick": {"blocks": 16, "turns": 15, "chunks": 1_000}}
ASK = "When are you open?"


@dataclass
class Budget:
    feature: str
    plain: str  # what the row is measured against
    cpu_ms: float
    cpu_plain_ms: float
    p50_ms: float
    p50_plain_ms: float
    trips: int | None
    trips_plain: int | None
    note: str = ""

    @property
    def added_cpu_ms(self) -> float:
        return self.cpu_ms - self.cpu_plain_ms

    @property
    def added_p50_ms(self) -> float:
        return self.p50_ms - self.p50_plain_ms


Call = Callable[[], httpx.Response]
Prepare = Callable[[], None]


class Runner:
    def __init__(self, plan: dict[str, int], only: str | None = None) -> None:
        self.plan = plan
        self.only = only
        self.count = _count_round_trips()

    def wants(self, feature: str) -> bool:
        return self.only is None or self.only.lower() in feature.lower() or feature.startswith("control")

    def trips(self, call: Call) -> int:
        return min(self.count(call) for _ in range(5))

    def compare(self, feature: str, plain: str, without: tuple[Prepare, Call], with_: tuple[Prepare, Call],
                note: str = "", trips: bool = True, settle: Prepare = lambda: None) -> Budget | None:
        """`settle` runs at the end of each block, inside its CPU time (a relay draining an outbox).
        None when `--only` leaves the row out."""
        if not self.wants(feature):
            return None
        sides = {"plain": without, "feature": with_}
        counted: dict[str, int | None] = {}
        for name, (prepare, call) in sides.items():
            prepare()
            counted[name] = self.trips(call) if trips else None
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        wall: dict[str, list[float]] = {name: [] for name in sides}
        for block in range(self.plan["blocks"]):
            for name in sides if block % 2 == 0 else reversed(sides):
                prepare, call = sides[name]
                prepare()
                times = []
                started = time.process_time()
                for _ in range(self.plan["turns"]):
                    t = time.perf_counter()
                    answer = call()
                    times.append(time.perf_counter() - t)
                    assert answer.status_code == 200, answer.text[:300]
                settle()
                cpu[name].append((time.process_time() - started) / self.plan["turns"] * 1000)
                if block:
                    wall[name] += times
        budget = Budget(feature, plain, statistics.median(cpu["feature"][1:]), statistics.median(cpu["plain"][1:]),
                        statistics.median(wall["feature"]) * 1000, statistics.median(wall["plain"]) * 1000,
                        counted["feature"], counted["plain"], note)
        print(f"  {feature}: +{budget.added_cpu_ms:.3f} ms CPU, +{budget.added_p50_ms:.3f} ms p50, "
              f"trips {budget.trips_plain} → {budget.trips}", file=sys.stderr, flush=True)
        return budget


def _nothing() -> None:
    pass


def _config(url: str, prefix: str, **store: Any) -> Config:
    config = load_config(environ={})
    limits = msgspec.structs.replace(config.limits, rate_per_minute=10**9)
    widget = msgspec.structs.replace(config.widget, visitor_rate_per_minute=10**9, address_rate_per_minute=10**9)
    # No seeded knowledge: its ingestion would run in this process during the first rows.
    knowledge = msgspec.structs.replace(config.knowledge, seed=[])
    return msgspec.structs.replace(config, limits=limits, widget=widget, knowledge=knowledge,
                                   store=msgspec.structs.replace(config.store, url=url, prefix=prefix, **store))


@contextlib.contextmanager
def _app(config: Config) -> Iterator[InProcessApp]:
    app = InProcessApp(create_app(config)).start()
    try:
        _settle()
        yield app
    finally:
        app.stop()


def measure(plan: dict[str, int], only: str | None = None) -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    redis = targets.Redis.start()
    logs.configure("warning", "text")  # the access-line row switches it to info
    handler = logging.getLogger("chatspark").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (the process ends soon)
    runner = Runner(plan, only)
    prefix = f"budget-{secrets.token_hex(4)}"
    config = _config(redis.url, prefix)
    rows: list[Budget | None] = []
    out: dict[str, Any] = {"plan": plan, "rows": rows}
    with _app(config) as app:
        key, capped_key = _key(config, None), _key(config, 10**9)
        with _client(app, key) as api, _client(app, capped_key) as capped, _client(app) as browser:
            made = api.post("/api/v1/agents", json={"name": "plain", "model": "local", "allowedOrigins": [ORIGIN]})
            agent = made.json()["agent"]["id"]
            chat = f"/api/v1/agents/{agent}/chat"

            def native() -> httpx.Response:
                return api.post(chat, json={"message": ASK})

            plain = (_nothing, native)
            for _ in range(100):  # first calls: imports, caches
                native()
            out["plain_turn"] = {"trips": runner.trips(native)}
            print(f"plain turn: {out['plain_turn']['trips']} round trips", file=sys.stderr, flush=True)

            rows.append(runner.compare(
                "control: the plain turn against itself", "plain turn", plain, plain,
                "the method's noise in this run: read every row against it"))
            rows.append(runner.compare(
                "monthly cap: credit hold + charge (capped key)", "uncapped key", plain,
                (_nothing, lambda: capped.post(chat, json={"message": ASK})),
                "the hold rides the lease's trip, the charge the turn's append"))

            root = logging.getLogger("chatspark")
            real = {name: getattr(metrics, name) for name in ("request_done", "stored", "answered", "first_token")}

            def instrumentation_off() -> None:
                root.setLevel(logging.WARNING)
                for name in real:
                    setattr(metrics, name, _no_op)

            def instrumentation_on() -> None:
                root.setLevel(logging.INFO)
                for name, function in real.items():
                    setattr(metrics, name, function)

            try:
                rows.append(runner.compare(
                    "metrics + access line (text, info)", "both off", (instrumentation_off, native),
                    (instrumentation_on, native), "the line written to /dev/null: a file or pipe adds its write"))
            finally:
                instrumentation_on()
                root.setLevel(logging.WARNING)

            produce = conversations.turn_events

            def events(on: bool) -> Prepare:
                def prepare() -> None:
                    conversations.turn_events = produce if on else _no_events  # type: ignore[assignment]
                return prepare

            try:
                rows.append(runner.compare(
                    "webhook enqueue (turn events to the outbox; relay in process)", "events off",
                    (events(False), native), (events(True), native),
                    "in the append's script: no trip of its own; CPU includes the relay draining the outbox",
                    settle=lambda: _drained(redis, Layout(prefix).webhook_outbox())))
            finally:
                conversations.turn_events = produce  # type: ignore[assignment]

            if runner.wants("analytics"):
                rows.append(_analytics())

            token = browser.post(f"/api/v1/widget/{agent}/session", json={},
                                 headers={"origin": ORIGIN}).json()["visitorToken"]
            visitor = {"origin": ORIGIN, "chatspark-visitor": token}
            rows.append(runner.compare(
                "widget public path (visitor token, origin, limits)", "native turn, same agent", plain,
                (_nothing, lambda: browser.post(f"/api/v1/widget/{agent}/chat", json={"message": ASK}, headers=visitor))))

            compat_body = {"model": f"agent:{agent}", "messages": [{"role": "user", "content": ASK}]}
            rows.append(runner.compare(
                "OpenAI-compatible layer (/v1/chat/completions)", "native turn, same agent", plain,
                (_nothing, lambda: api.post("/v1/chat/completions", json=compat_body))))

            if runner.wants("retrieval"):
                grounded, chunks = _grounded_agent(api, plan["chunks"])
                questions = help_site.questions()
                asked = iter(range(10**9))

                def ask(agent_id: int) -> Call:
                    return lambda: api.post(f"/api/v1/agents/{agent_id}/chat",
                                            json={"message": questions[next(asked) % len(questions)]})

                out["grounded_chunks"] = chunks
                _settle()
                rows.append(runner.compare(
                    f"retrieval: grounded turn ({chunks:,} chunks)", "agent without knowledge",
                    (_nothing, ask(agent)), (_nothing, ask(grounded))))
    return _wait_replicas(runner, plan, rows, out, redis)


def _settle(timeout: float = 20.0) -> None:
    """Waits until this process is idle (a start loads the embedder and runs its first jobs in the
    background, seconds of CPU that would land on the first rows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = time.process_time()
        time.sleep(0.5)
        if time.process_time() - before < 0.05:
            return


def _drained(redis: targets.Redis, outbox: str) -> None:
    deadline = time.monotonic() + 30
    while redis.client.xlen(outbox) and time.monotonic() < deadline:
        time.sleep(0.005)


def _no_op(*args: Any, **kwargs: Any) -> None:
    pass


def _no_events(*args: Any) -> list[None]:
    return [None, None, None]


def _analytics() -> Budget:
    """The daily counters ride the index script already in the turn's write (same trip, same script
    call): what is separable is the arguments our process computes for them."""
    from chatspark.store.conversations import StoredTurn, latency_bucket, utc_day  # noqa: PLC0415
    from chatspark.store.layout import Layout  # noqa: PLC0415

    layout = Layout("cs")
    now = int(time.time() * 1000)
    turn = StoredTurn(id="m", user_id="u", query="q", response="r", model="local", created=now, asked=now - 300)
    rounds = 20_000
    started = time.process_time()
    for _ in range(rounds):
        layout.agent_stats(7, utc_day(turn.created))
        layout.agent_counted_turns(7)
        latency_bucket(turn)
    per_turn = (time.process_time() - started) / rounds * 1000
    return Budget("analytics counters (daily, in the index script)", "—", per_turn, 0.0, 0.0, 0.0, 0, 0,
                  "no trip and no script call of their own: the arguments our process adds, micro-timed; "
                  "the Lua work is Redis's")


def _grounded_agent(api: httpx.Client, chunks: int) -> tuple[int, int]:
    """An agent whose knowledge is ~`chunks` chunks of generated help-centre text (wordllama)."""
    agent = api.post("/api/v1/agents", json={"name": "grounded", "model": "local"}).json()["agent"]["id"]
    per_source = 900_000  # under [server] max_body_bytes (1 MiB) as JSON
    total = int(chunks * 620)  # ~620 bytes a chunk (bench/README.md, knowledge bench)
    ids = []
    for seed in range(max(1, -(-total // per_source))):
        text = help_site.bulk_text(seed + 1, min(per_source, total - seed * per_source))
        made = api.post(f"/api/v1/agents/{agent}/training", json={"type": "text", "source": f"export-{seed}", "data": text})
        assert made.status_code == 201, made.text[:300]
        ids.append(made.json()["source"]["id"])
    deadline = time.monotonic() + 300
    stored = 0
    for tid in ids:
        while True:
            source = api.get(f"/api/v1/agents/{agent}/training/{tid}").json()["source"]
            if source["status"] == "completed":
                stored += int(source["dataCount"])
                break
            assert source["status"] != "failed" and time.monotonic() < deadline, source
            time.sleep(0.1)
    api.post(f"/api/v1/agents/{agent}/chat", json={"message": ASK})  # builds the index (reported apart by the knowledge bench)
    return agent, stored or chunks


def _wait_replicas(runner: Runner, plan: dict[str, int], rows: list[Budget | None], out: dict[str, Any],
                   redis: targets.Redis) -> dict[str, Any]:
    """The last row (its own Redis setup); then the run's results, rows `--only` left out dropped."""
    redis.proc.terminate()
    if runner.wants("wait_replicas"):
        rows.append(_wait_replica_row(runner))
    out["rows"] = [row for row in rows if row is not None]
    return out


def _wait_replica_row(runner: Runner) -> Budget | None:
    from tests.faults.test_failover import SentinelSetup  # noqa: PLC0415

    setup = SentinelSetup()
    try:
        prefix = f"budget-wait-{secrets.token_hex(4)}"
        with _app(_config(setup.url, prefix)) as plain_app, _app(_config(setup.url, prefix, wait_replicas=1)) as waiting:
            key = _key(_config(setup.url, prefix), None)
            with _client(plain_app, key) as plain, _client(waiting, key) as wait:
                agent = plain.post("/api/v1/agents", json={"name": "wait", "model": "local"}).json()["agent"]["id"]
                chat = f"/api/v1/agents/{agent}/chat"
                return runner.compare(
                    "wait_replicas = 1 (Sentinel, 2 replicas on loopback)", "wait_replicas = 0, same Sentinel",
                    (_nothing, lambda: plain.post(chat, json={"message": ASK})),
                    (_nothing, lambda: wait.post(chat, json={"message": ASK})),
                    "WAIT rides the write's pipeline; a replica over a network adds its round trip")
    finally:
        setup.stop()


def markdown(out: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = out["rows"]
    load = f", load average {out['load_at_start']:.1f} at the start" if "load_at_start" in out else ""
    lines = [f"### Feature budgets ({out['mode']} run, {out['started']}{load}, commit {out['commit']})", "",
             f"Per JSON turn on the offline `local` model, in process; the plain turn takes "
             f"{out['plain_turn']['trips']} Redis round trips. Each row against its own baseline, same run.", "",
             "| feature | measured against | added CPU per turn | added latency p50 | Redis round trips per turn | note |",
             "|---|---|---:|---:|---|---|"]
    adding = [r["feature"] for r in rows if r["trips"] is not None and r["trips_plain"] is not None
              and r["trips"] > r["trips_plain"]]
    lines[2] += (" No feature adds a Redis round trip to the turn it is measured on." if not adding
                 else f" Features that add round trips: {', '.join(adding)}.")
    for r in rows:
        added_trips = (r["trips"] - r["trips_plain"]) if r["trips"] is not None and r["trips_plain"] is not None else None
        trips = "–" if added_trips is None else f"{r['trips']} (+{added_trips})" if added_trips else f"{r['trips']} (+0)"
        p50 = "–" if not r["p50_ms"] and not r["p50_plain_ms"] else f"{r['added_p50_ms']:+.3f} ms"
        lines.append(f"| {r['feature']} | {r['plain']} | {r['added_cpu_ms'] * 1000:+.0f} µs "
                     f"({r['cpu_plain_ms']:.2f} → {r['cpu_ms']:.2f} ms) | {p50} | {trips} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budgets", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns, 1k chunks instead of 10k (development)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--only", help="the rows whose feature contains this text (the control row too; development)")
    parser.add_argument("--blocks", type=int, help="blocks per side instead of the plan's")
    args = parser.parse_args(argv)
    targets.install_cleanup()
    mode = "quick" if args.quick else "full"
    began = time.perf_counter()
    from bench.run import _commit  # noqa: PLC0415

    out = {"mode": mode, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit(),
           "load_at_start": os.getloadavg()[0]}
    try:
        plan = PLANS[mode] | ({"blocks": args.blocks} if args.blocks else {})
        out |= measure(plan, args.only)
    finally:
        targets.stop_all()
    out["rows"] = [asdict(r) | {"added_cpu_ms": r.added_cpu_ms, "added_p50_ms": r.added_p50_ms} for r in out["rows"]]
    out["elapsed_s"] = time.perf_counter() - began
    table = markdown(out)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "budgets.json").write_text(json.dumps(out, indent=1) + "\n")
    (folder / "budgets.md").write_text(table)
    print(table)
    print(f"elapsed: {out['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
