"""One fault scenario: load on the rig while a script injects faults, then everything read back.

`run()` returns what happened; `assert_nothing_lost()` holds every scenario to the same bar: no
problem outcome, every acknowledged turn stored exactly once and in order, nothing partial in Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tests.faults import report
from tests.faults.harness import AGENT_REFUSED, AGENT_REFUSED_FIRST, PREFIX, Rig
from tests.faults.load import (
    FastReader,
    Ledger,
    Load,
    LoadProfile,
    SlowReader,
    Verdict,
    read_back,
    store_integrity,
    trickle_all,
)

Script = Callable[["Run"], Awaitable[None]]

STALLED = 2.0  # chunks a second per long stream at most: stopped (flowing is ~165; a trickle ~0.1)
STALL_WINDOW = 1.0  # seconds between two looks at the fake's long streams
STALL_DEADLINE = 30.0  # seconds for the buffers to fill (~3 s on an idle machine)


@dataclass
class Run:
    rig: Rig
    ledger: Ledger
    load: Load
    started: float
    marks: dict[str, float] = field(default_factory=dict)  # named moments (time.monotonic())
    extra_faults: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    def outcomes_between(self, start: float, end: float) -> list[str]:
        return [label for at, label in self.ledger.events if start <= at <= end]

    async def kill_redis_for(self, seconds: float) -> float:
        """SIGKILL the Redis, keep it down `seconds`, restart it; returns how long until the service
        said healthy again."""
        n = sum(1 for name in self.marks if name.startswith("kill")) + 1
        self.mark(f"kill{n}")
        await asyncio.to_thread(self.rig.redis.kill)
        await asyncio.sleep(seconds / 2)
        async with httpx.AsyncClient(timeout=5) as http:
            health = await http.get(f"{self.rig.service.base_url}/api/v1/health")
        if health.status_code != 503 or health.json().get("status") != "degraded":
            self.notes.append(f"health during outage {n}: {health.status_code} {health.text[:100]}")
            self.marks["health-not-degraded"] = 1
        await asyncio.sleep(seconds / 2)
        restart = self.mark(f"restart{n}")
        await asyncio.to_thread(self.rig.redis.restart)
        while not await asyncio.to_thread(self.rig.service.healthy):
            await asyncio.sleep(0.05)
        recovered = self.mark(f"recovered{n}") - restart
        self.extra_faults["redis SIGKILL"] = self.extra_faults.get("redis SIGKILL", 0) + 1
        return recovered


@dataclass
class Stall:
    """The slow readers' long streams as the fake upstream saw them: chunks a second per stream."""

    streams: int  # long streams open at the fake when the load started
    seconds: float  # from the readers' requests until their streams stalled (or the deadline)
    rate_before: float  # over the last STALL_WINDOW before the load
    chunks: int  # written to them all when the load started
    rate_during: float = float("nan")  # over the load
    streams_after: int = 0  # long streams still open when the load ended


@dataclass
class Outcome:
    run: Run
    verdict: Verdict
    integrity: list[str]
    rss_drift_kb: int
    fd_drift: int
    stall: Stall | None = None

    @property
    def ledger(self) -> Ledger:
        return self.run.ledger


def quiescent_sample(rig: Rig, settle: float = 1.5) -> tuple[int, int]:
    """RSS (kB) and open fds of the server once its connections have had time to close."""
    time.sleep(settle)
    return rig.service.rss_kb(), rig.service.fd_count()


async def until_stalled(rig: Rig, streams: int) -> Stall:
    """Waits for `streams` long streams at the fake to stop (STALLED), up to STALL_DEADLINE."""
    started = time.monotonic()
    previous: tuple[float, int] | None = None  # (when, chunks written) once all the streams were open
    while True:
        await asyncio.sleep(STALL_WINDOW)
        stats = await asyncio.to_thread(rig.upstream.stats)
        now, chunks, opened = time.monotonic(), sum(stats.long_streams), len(stats.long_streams)
        rate = float("nan")
        if opened >= streams and previous is not None:
            rate = (chunks - previous[1]) / (now - previous[0]) / streams
        if rate < STALLED or now - started > STALL_DEADLINE:
            return Stall(opened, now - started, rate, chunks)
        previous = (now, chunks) if opened >= streams else None


def run(rig: Rig, name: str, profile: LoadProfile, seconds: float, script: Script | None = None,
        slow_readers: int = 0, seed: int = 1, record: bool = True, until_stalled_first: bool = False,
        fast_readers: int = 0) -> Outcome:
    """`until_stalled_first`: the load starts once the slow readers' streams stalled at the fake (see
    `Outcome.stall`). `fast_readers`: FastReaders alongside the load (a control for slow readers)."""
    before_rss, before_fds = quiescent_sample(rig, settle=0.5)
    injected_before = rig.upstream.stats().injected
    ledger = Ledger()
    load = Load(rig.service.base_url, rig.key, ledger, profile, seed=seed)
    current = Run(rig, ledger, load, time.monotonic())

    stall: Stall | None = None

    async def main() -> None:
        nonlocal stall
        stop = asyncio.Event()
        readers = [SlowReader(rig.service.port, rig.key) for _ in range(slow_readers)]
        readers += [FastReader(rig.service.port, rig.key) for _ in range(fast_readers)]
        trickling = asyncio.ensure_future(trickle_all(readers, stop))
        try:
            if until_stalled_first:
                assert slow_readers > 0
                stall = await until_stalled(rig, slow_readers)
            started = time.monotonic()
            jobs = [load.run(seconds, stop)]
            if script is not None:
                jobs.append(script(current))
            await asyncio.gather(*jobs)
            if stall is not None:
                after = (await asyncio.to_thread(rig.upstream.stats)).long_streams
                stall.streams_after = len(after)
                stall.rate_during = (sum(after) - stall.chunks) / (time.monotonic() - started) / slow_readers
        finally:
            stop.set()
            await trickling
            for reader in readers:
                reader.close()
        for reader in readers:
            if reader.received == 0 or not reader.head.startswith(b"HTTP/1.1 200"):
                ledger.problem(f"a {type(reader).__name__} got {reader.received} bytes: {reader.head!r} ({reader.error})")

    asyncio.run(main())
    after_rss, after_fds = quiescent_sample(rig)
    verdict = read_back(rig.service.base_url, rig.key, ledger)
    with rig.redis.client() as raw:
        integrity = store_integrity(raw, PREFIX)
    injected = rig.upstream.stats().injected
    faults = {k: v - injected_before.get(k, 0) for k, v in injected.items() if v - injected_before.get(k, 0)}
    refused = ledger.by_agent[AGENT_REFUSED] + ledger.by_agent[AGENT_REFUSED_FIRST]
    faults = {**faults, **current.extra_faults, **({"refused port": refused} if refused else {}),
              **({"slow reader": slow_readers} if slow_readers else {})}
    outcome = Outcome(current, verdict, integrity, after_rss - before_rss, after_fds - before_fds, stall)
    if record:
        report.record(
            name, faults=faults, requests=ledger.requests, acknowledged=verdict.acknowledged,
            lost=len(verdict.lost), errors_5xx=ledger.merge_5xx(), rss_drift_kb=outcome.rss_drift_kb,
            fd_drift=outcome.fd_drift, duplicated=len(verdict.duplicated), misordered=len(verdict.misordered),
            unacknowledged_stored=verdict.unacknowledged_stored, problems=ledger.problems[:20],
            busy_409=ledger.busy, replays=ledger.replays, notes="; ".join(current.notes),
        )
    return outcome


def assert_nothing_lost(outcome: Outcome) -> None:
    ledger, verdict = outcome.ledger, outcome.verdict
    assert ledger.problems == [], f"{len(ledger.problems)} problems, first: {ledger.problems[:5]}"
    assert verdict.acknowledged > 0, "nothing was acknowledged: the scenario tested nothing"
    assert verdict.lost == [], f"{len(verdict.lost)} acknowledged turns lost: {verdict.lost[:5]}"
    assert verdict.duplicated == [], f"acknowledged turns stored twice: {verdict.duplicated[:5]}"
    assert verdict.misordered == [], f"turns out of order: {verdict.misordered[:5]}"
    assert verdict.foreign == [], f"stored messages nobody sent: {verdict.foreign[:5]}"
    assert outcome.integrity == [], f"Redis holds partial writes: {outcome.integrity[:5]}"
