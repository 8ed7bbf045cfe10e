"""The whole benchmark, in order: start the pieces, measure each target, alternate the throughput
runs, write the results. Each step is bounded in time; a step that fails is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import report, scenarios, targets, wrk
from bench.scenarios import BY_KEY, SCENARIOS
from bench.targets import Fake, Redis, Server

# Full run ≤ 10 minutes on 2 cores; quick run ~1–2 minutes, for development only (noisy).
# Slow streams run with 2 workers each (issue 17's targets): `slow_streams` of them for the floor
# and the direct backend, `slow_streams_litellm` for LiteLLM proxy and the litellm backend.
PLANS: dict[str, dict[str, Any]] = {
    "full": {"pairs": 80, "pairs_stream": 30, "pairs_paced": 6, "concurrency": 16, "closed_s": 1.2,
             "slow_streams": 2000, "slow_streams_litellm": 1000, "open_rate": 50, "open_s": 3.0,
             "sweep": [1, 4, 16, 64, 256], "sweep_s": 1.0, "head_connections": 16, "head_s": 1.5, "head_runs": 3,
             "two_workers": True},
    "quick": {"pairs": 40, "pairs_stream": 10, "pairs_paced": 2, "concurrency": 8, "closed_s": 1.0,
              "slow_streams": 300, "slow_streams_litellm": 150, "open_rate": 50, "open_s": 1.5, "sweep": [1, 16],
              "sweep_s": 1.0, "head_connections": 16, "head_s": 1.0, "head_runs": 1, "two_workers": True},
}
# "litellm" and "openai" run the shipped config.toml (what users run; the README's headline);
# "-tuned" the bench's own config (log at warning, an uncapped live key, retries 0), fewer rows.
TARGETS = ("fake", "proxy", "litellm", "openai", "litellm-tuned", "openai-tuned")
LABELS = {"fake": "fake upstream direct (floor)", "proxy": "LiteLLM proxy 1.106.12",
          "litellm": "Chatspark, litellm backend, shipped config", "openai": "Chatspark, openai backend, shipped config",
          "litellm-tuned": "Chatspark, litellm backend, bench config",
          "openai-tuned": "Chatspark, openai backend, bench config"}
SLOW_STREAMS = ("fake", "proxy", "litellm", "openai")


def step(results: dict[str, Any], key: str, action: Callable[[], Any]) -> Any:
    """Runs one measurement; a failure is written into the results and the run goes on."""
    started = time.perf_counter()
    try:
        value = action()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 — one broken target must not lose the others' numbers
        value = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
        print(f"    {key}: FAILED {value['error'][:300]}", file=sys.stderr, flush=True)
        traceback.print_exc(limit=2, file=sys.stderr)
    results[key] = value
    print(f"    {key}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return value


class Bench:
    def __init__(self, plan: dict[str, Any], wanted: list[str]) -> None:
        self.plan = plan
        self.wanted = wanted
        self.notes: list[str] = []
        self.fake = Fake.start()
        self.redis = Redis.start()
        self.floor = targets.fake_server(self.fake)
        self.envs: dict[str, dict[str, str]] = {}
        self.keys: dict[str, str] = {}
        self.fields: dict[str, list[str]] = {}

    # --- targets ---------------------------------------------------------------------------------

    def available(self) -> list[str]:
        found = [t for t in self.wanted if t in TARGETS]
        if any(t.startswith("openai") for t in found):
            problem = ("does not exist yet" if not (targets.ROOT / "backends" / "openai.py").exists()
                       else targets.python_can_import("backends.openai"))
            if problem is not None:
                found = [t for t in found if not t.startswith("openai")]
                self.notes.append(f"Chatspark openai backend: skipped ({problem}).")
        if "proxy" in found and not targets.PROXY_BIN.exists():
            found.remove("proxy")
            self.notes.append("LiteLLM proxy: skipped, bench/.venv-proxy is missing (run `make bench`).")
        return found

    def start(self, name: str, workers: int) -> Server:
        server = self._start(name, workers)
        server.settle_s = targets.settle(server)
        return server

    def _start(self, name: str, workers: int) -> Server:
        if name == "fake":
            return self.floor
        if name == "proxy":
            return targets.start_proxy(f"proxy-{workers}w", self.fake, sorted({s.model for s in SCENARIOS}), workers)
        if name not in self.envs:
            backend = name.removesuffix("-tuned")
            if name.endswith("-tuned"):
                if not self.fields:
                    self.fields = targets.config_fields()
                config = targets.chatspark_config(self.fake, backend, scenarios.agents(), self.fields)
            else:
                config = targets.shipped_config(self.fake, backend, scenarios.agents())
            self.envs[name] = targets.chatspark_env(f"chatspark-{name}", config, self.redis)
            # The shipped rows: a test key with its default monthly cap (every turn holds and charges
            # a credit); the tuned rows: a live key, uncapped by default.
            self.keys[name] = targets.create_key(self.envs[name], *(() if name.endswith("-tuned") else ("--test",)))
        return targets.start_chatspark(f"chatspark-{name}-{workers}w", self.envs[name], self.keys[name], workers,
                                       BY_KEY["new"].agent)

    # --- measurements ----------------------------------------------------------------------------

    def calibrate(self) -> dict[str, Any]:
        """The load generators against the fake alone: their ceilings must sit far above every target."""
        out: dict[str, Any] = {}
        new = BY_KEY["new"]
        if wrk.available():
            step(out, "wrk_closed", lambda: wrk.run(self.floor, new, self.plan["head_connections"], 2.0))
        step(out, "loadgen_closed", lambda: scenarios.closed(self.floor, new, 16, 1.5, [], None))
        step(out, "loadgen_open", lambda: scenarios.open_loop(self.floor, new, 5000, 1.5))
        return out

    def measure(self, server: Server, rows: str = "all") -> dict[str, Any]:
        """Every row; `rows="few"` (the tuned configs): the new-conversation turn and the streams'
        CPU only, enough to set the shipped config's cost against them."""
        p, out = self.plan, {}
        if rows == "few":
            step(out, "paired_new", lambda: scenarios.paired(self.floor, server, BY_KEY["new"], p["pairs"], []))
            for key in ("new", "stream200", "stream1"):
                step(out, f"closed_{key}", lambda k=key: scenarios.closed(
                    server, BY_KEY[k], p["concurrency"], p["closed_s"], [], self.redis))
            return out
        conv: dict[str, list[str]] = {}
        for key in ("hist20", "hist100"):
            conv[key] = step(out, f"seed_{key}", lambda k=key: scenarios.seed(server, BY_KEY[k], p["concurrency"] + 1))
            if not isinstance(conv[key], list):
                conv[key] = []
        for key, pairs in (("new", p["pairs"]), ("hist20", p["pairs"]), ("hist100", p["pairs"]),
                           ("stream200", p["pairs_stream"]), ("stream200p", p["pairs_paced"])):
            step(out, f"paired_{key}",
                 lambda k=key, n=pairs: scenarios.paired(self.floor, server, BY_KEY[k], n, conv.get(k, [])[-1:]))
        for key in ("new", "hist20", "hist100", "stream200", "stream1"):
            step(out, f"closed_{key}", lambda k=key: scenarios.closed(
                server, BY_KEY[k], p["concurrency"], p["closed_s"], conv.get(k, [])[:p["concurrency"]], self.redis))
        step(out, "open_loop", lambda: scenarios.open_loop(server, BY_KEY["new"], p["open_rate"], p["open_s"]))
        if wrk.available():
            out["sweep"] = [step({}, f"sweep_c{c}", lambda c=c: wrk.run(server, BY_KEY["new"], c, p["sweep_s"]))
                            for c in p["sweep"]]
        return out

    def slow_streams(self, name: str, server: Server) -> dict[str, Any]:
        """Last for each target, which is stopped right after: a target that fell behind would still
        be working off abandoned streams, which must not be charged to the next measurement."""
        count = self.plan["slow_streams_litellm" if name in ("proxy", "litellm") else "slow_streams"]
        out: dict[str, Any] = {}
        step(out, "slow_streams", lambda: scenarios.slow_streams(server, BY_KEY["slow"], count))
        out["slow_streams"]["workers"] = server.workers if "error" not in out["slow_streams"] else None
        return out

    def throughput(self, servers: dict[str, Server]) -> dict[str, Any]:
        """Turns/s of a new conversation at a fixed connection count: runs alternate between targets,
        so a slow minute on the machine falls on all of them; the median of the runs is reported."""
        p, runs = self.plan, {name: [] for name in servers}
        for round_ in range(p["head_runs"]):
            for name, server in servers.items():
                if wrk.available():
                    result = step({}, f"{name} run {round_ + 1}",
                                  lambda s=server: wrk.run(s, BY_KEY["new"], p["head_connections"], p["head_s"]))
                else:
                    result = step({}, f"{name} run {round_ + 1}", lambda s=server: scenarios.closed(
                        s, BY_KEY["new"], p["head_connections"], p["head_s"], [], None))
                runs[name].append(result)
        out = {}
        for name, results in runs.items():
            good = [r for r in results if "turns_per_s" in r]
            out[name] = {"runs": results,
                         "turns_per_s": statistics.median(r["turns_per_s"] for r in good) if good else None,
                         "cpu_per_turn": statistics.median(r["cpu_per_turn"] for r in good) if good else None}
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Chatspark vs LiteLLM proxy, same fake upstream")
    parser.add_argument("--quick", action="store_true", help="~1–2 minutes, fewer samples (development only)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--out", default=str(targets.ROOT / "bench" / "results"), help="where results go")
    args = parser.parse_args(argv)
    targets.install_cleanup()
    plan = PLANS["quick" if args.quick else "full"]
    began = time.perf_counter()
    data: dict[str, Any] = {"mode": "quick" if args.quick else "full", "plan": plan, "labels": LABELS,
                            "machine": {"cpus": _cpus(), "python": platform.python_version(),
                                        "kernel": platform.release(), "load_at_start": os.getloadavg()[0]},
                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit(),
                            "targets": {}}
    try:
        return _run(args, plan, data, began)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        targets.stop_all()


def _run(args: argparse.Namespace, plan: dict[str, Any], data: dict[str, Any], began: float) -> int:
    bench = Bench(plan, [t.strip() for t in args.targets.split(",") if t.strip()])
    names = bench.available()
    if not wrk.available():
        bench.notes.append("wrk is not installed: throughput runs used the bench's own closed-loop generator.")
    print("calibrating the load generators against the fake", file=sys.stderr, flush=True)
    data["calibration"] = bench.calibrate()
    one: dict[str, Server] = {}
    for name in names:
        print(f"{LABELS[name]}: starting (1 worker)", file=sys.stderr, flush=True)
        entry: dict[str, Any] = data["targets"].setdefault(name, {})
        server = step(entry, "start", lambda n=name: bench.start(n, 1))
        if not isinstance(server, Server):
            continue
        entry["start"] = {"cold_start_s": server.cold_start, "settle_s": server.settle_s}
        one[name] = server
        print(f"{LABELS[name]}: measuring", file=sys.stderr, flush=True)
        entry.update(bench.measure(server, "few" if name.endswith("-tuned") else "all"))
    print("throughput, 1 worker each, alternating", file=sys.stderr, flush=True)
    data["throughput_1w"] = bench.throughput(one)
    for server in one.values():
        server.stop()
    if plan["two_workers"]:
        two: dict[str, Server] = {}
        # Started together (imports are most of a start: litellm's take ~10 s of CPU a process), so
        # the phase waits for the slowest start instead of their sum.
        # The bench-config rows stop at 1 worker: they are there to price the shipped config's extras.
        shipped = [name for name in names if not name.endswith("-tuned")]
        with ThreadPoolExecutor(len(shipped)) as pool:
            started = {name: pool.submit(step, {}, f"{name} start (2 workers)", lambda n=name: bench.start(n, 2))
                       for name in shipped}
        for name in shipped:
            server = started[name].result()
            if isinstance(server, Server):
                two[name] = server
                data["targets"].setdefault(name, {})["start_2w"] = {"ready_s": server.cold_start,
                                                                    "settle_s": server.settle_s}
        print("throughput, 2 workers each, alternating", file=sys.stderr, flush=True)
        data["throughput_2w"] = bench.throughput(two)
        # Then the slow streams, each target after the one before it was stopped.
        for name in two:
            if name in SLOW_STREAMS:
                print(f"{LABELS[name]}: slow streams (2 workers)", file=sys.stderr, flush=True)
                data["targets"][name].update(bench.slow_streams(name, two[name]))
            two[name].stop()
    data["notes"] = bench.notes
    targets.stop_all()  # before the chart is drawn: nothing of ours still running
    data["elapsed_s"] = time.perf_counter() - began
    data["machine"]["load_at_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown(data)
    (out / "latest.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "latest.md").write_text(table)
    chart = report.chart(out / "latest.json", out / "latest.png")
    print(table)
    print(f"results: {out / 'latest.json'}, {out / 'latest.md'}" + (f", {chart}" if chart else " (no chart: "
          "bench/.venv with matplotlib is missing)"))
    print(f"elapsed: {data['elapsed_s']:.0f} s")
    return 0


def _commit() -> str:
    """The measured code: HEAD, marked `+dirty` when the work tree differs from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=targets.ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # The results a run writes (bench/results/) do not make the measured code dirty.
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results") else "")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
