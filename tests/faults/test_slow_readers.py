"""Clients reading a long stream at a trickle (a tiny receive buffer, a few bytes every 100 ms) do
not starve the others: their p99 stays within 3x of the p99 without the slow readers; and once the
slow readers leave, the service lets go of their upstream streams and sockets."""

from __future__ import annotations

import time

import pytest

from tests.faults import report, scenario
from tests.faults.harness import AGENT_DIRECT, AGENT_LITELLM, Rig
from tests.faults.load import LoadProfile, percentile

SLACK = 3.0
FLOOR = 0.05  # seconds: a p99 below this counts as this (noise, not starvation)


@pytest.mark.parametrize(
    ("seconds", "workers", "readers"),
    [pytest.param(4, 6, 12, id="fast"), pytest.param(12, 8, 40, id="full", marks=pytest.mark.faults)],
)
def test_slow_readers_do_not_starve_other_clients(fresh_rig: Rig, seconds, workers, readers):  # type: ignore[no-untyped-def]
    profile = LoadProfile(workers=workers, clean=True, agents={AGENT_LITELLM: 1, AGENT_DIRECT: 1},
                          idempotent_share=0.0, shared_share=0.0)
    closed_before = fresh_rig.upstream.stats().closed_streams
    baseline = scenario.run(fresh_rig, "baseline", profile, seconds, record=False)
    # The readers first trickle long enough for the service's writes to them to back up: what is
    # measured is stalled readers, not the CPU their answers cost while the buffers fill.
    slowed = scenario.run(fresh_rig, f"slow readers ×{readers}", profile, seconds, slow_readers=readers, seed=2,
                          record=False, readers_first=3.0)
    for outcome in (baseline, slowed):
        scenario.assert_nothing_lost(outcome)
    p99_without = percentile(baseline.ledger.latencies, 0.99)
    p99_with = percentile(slowed.ledger.latencies, 0.99)
    # Their upstream streams were cancelled when they left (no leaked model calls).
    deadline = time.monotonic() + 10
    while fresh_rig.upstream.stats().closed_streams - closed_before < readers and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = fresh_rig.upstream.stats().closed_streams - closed_before
    report.record(
        f"slow readers ×{readers}", faults={"slow reader": readers}, requests=baseline.ledger.requests + slowed.ledger.requests,
        acknowledged=baseline.verdict.acknowledged + slowed.verdict.acknowledged,
        lost=len(baseline.verdict.lost) + len(slowed.verdict.lost),
        errors_5xx={**baseline.ledger.merge_5xx(), **slowed.ledger.merge_5xx()},
        rss_drift_kb=slowed.rss_drift_kb, fd_drift=slowed.fd_drift,
        notes=f"p99 {p99_without * 1000:.0f} ms without, {p99_with * 1000:.0f} ms with; "
              f"{cancelled}/{readers} upstream streams closed when they left",
    )
    assert len(slowed.ledger.latencies) > 0.5 * len(baseline.ledger.latencies), "the others got far fewer turns done"
    assert p99_with <= SLACK * max(p99_without, FLOOR), f"p99 {p99_with:.3f} s with slow readers, {p99_without:.3f} s without"
    assert cancelled >= readers, f"only {cancelled} of {readers} slow readers' upstream streams were closed"
    assert slowed.fd_drift < 20, f"{slowed.fd_drift} more open fds after the slow readers left"
