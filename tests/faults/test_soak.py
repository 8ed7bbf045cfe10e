"""A bounded two-minute mixed soak — JSON and streams, idempotent retries, upstream faults at a low
rate, slow readers, one Redis SIGKILL — with the server's RSS and open fds sampled when it is idle
between cycles: flat after warm-up (less than 15 MB and 20 fds of drift)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.faults import report
from tests.faults.harness import AGENT_REFUSED, AGENT_REFUSED_FIRST, PREFIX, Rig
from tests.faults.load import Ledger, Load, LoadProfile, SlowReader, read_back, store_integrity, trickle_all
from tests.faults.scenario import Run, assert_nothing_lost, Outcome, quiescent_sample

CYCLES = 10
CYCLE_SECONDS = 10
WARMUP_CYCLES = 3
KILL_IN_CYCLE = 6
RSS_TOLERANCE_KB = 15 * 1024
FD_TOLERANCE = 20
MIX = {"429": 0.02, "500": 0.02, "slow": 0.01, "reset": 0.01, "drop": 0.02}


@pytest.mark.faults
@pytest.mark.timeout(400)
def test_a_two_minute_mixed_soak_keeps_rss_and_fds_flat(fresh_rig: Rig) -> None:
    fresh_rig.upstream.set_mix(**MIX)
    injected_before = fresh_rig.upstream.stats().injected
    ledger = Ledger()
    run = Run(fresh_rig, ledger, Load(fresh_rig.service.base_url, fresh_rig.key, ledger, LoadProfile()), time.monotonic())
    idle: list[tuple[int, int]] = []  # (rss kB, fds) between cycles
    peak_rss = [0]
    sampling = threading.Event()

    def sample_peaks() -> None:
        while not sampling.wait(0.5):
            peak_rss[0] = max(peak_rss[0], fresh_rig.service.rss_kb())

    sampler = threading.Thread(target=sample_peaks, daemon=True)
    sampler.start()
    try:
        for cycle in range(CYCLES):
            load = Load(fresh_rig.service.base_url, fresh_rig.key, ledger, LoadProfile(workers=12), seed=100 + cycle)
            run.load = load

            async def one_cycle() -> None:
                stop = asyncio.Event()
                readers = [SlowReader(fresh_rig.service.port, fresh_rig.key) for _ in range(4)]
                trickling = asyncio.ensure_future(trickle_all(readers, stop))
                jobs = [load.run(CYCLE_SECONDS, stop)]
                if cycle == KILL_IN_CYCLE:
                    async def kill() -> None:
                        await asyncio.sleep(3)
                        await run.kill_redis_for(1.5)
                    jobs.append(kill())
                try:
                    await asyncio.gather(*jobs)
                finally:
                    stop.set()
                    await trickling
                    for reader in readers:
                        reader.close()

            asyncio.run(one_cycle())
            idle.append(quiescent_sample(fresh_rig, settle=2.0))
    finally:
        sampling.set()
        sampler.join()
    fresh_rig.upstream.quiet()

    verdict = read_back(fresh_rig.service.base_url, fresh_rig.key, ledger)
    with fresh_rig.redis.client() as raw:
        integrity = store_integrity(raw, PREFIX)
    base_rss, base_fds = idle[WARMUP_CYCLES - 1]
    after = idle[WARMUP_CYCLES:]
    rss_drift = max(rss for rss, _ in after) - base_rss
    fd_drift = max(fds for _, fds in after) - base_fds
    injected = fresh_rig.upstream.stats().injected
    faults = {k: v - injected_before.get(k, 0) for k, v in injected.items() if v > injected_before.get(k, 0)}
    refused = ledger.by_agent[AGENT_REFUSED] + ledger.by_agent[AGENT_REFUSED_FIRST]
    report.record(
        "2-minute mixed soak", faults={**faults, **run.extra_faults, "refused port": refused, "slow reader": 4 * CYCLES},
        requests=ledger.requests, acknowledged=verdict.acknowledged, lost=len(verdict.lost),
        errors_5xx=ledger.merge_5xx(), rss_drift_kb=rss_drift, fd_drift=fd_drift,
        idle_samples=idle, peak_rss_kb=peak_rss[0], unacknowledged_stored=verdict.unacknowledged_stored,
        notes=f"idle RSS {base_rss / 1024:.0f} MB after warm-up, peak {peak_rss[0] / 1024:.0f} MB under load; "
              f"idle fds {[fds for _, fds in idle]}",
    )
    assert_nothing_lost(Outcome(run, verdict, integrity, rss_drift, fd_drift))
    assert rss_drift < RSS_TOLERANCE_KB, f"RSS grew {rss_drift / 1024:.1f} MB after warm-up: {[r for r, _ in idle]}"
    assert fd_drift < FD_TOLERANCE, f"open fds grew by {fd_drift} after warm-up: {[f for _, f in idle]}"
