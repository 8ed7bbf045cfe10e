"""Clients that stop reading a long stream (a tiny receive buffer, a few bytes every 100 ms) do not
starve the others; once they leave, the service lets go of their upstream streams and sockets.

The stall is real and checked: the service's and the fake's sockets have small send buffers
(harness.SEND_BUFFER) and the long answer is far larger than every buffer between them, so the fake
stops writing to those streams before the load starts, and they stay stopped throughout. `[fast]`
(make test) checks behaviour, with generous bounds; `[full]` (make faults) also compares the other
clients' turns and p99 with a phase without readers (the claim) and a control phase with as many
readers reading at full speed (what the readers would cost if they had not stalled).
"""

from __future__ import annotations

import time

import pytest

from tests.faults import report, scenario
from tests.faults.harness import AGENT_DIRECT, AGENT_LITELLM, Rig
from tests.faults.load import LoadProfile, percentile

# The others' p99 with slow readers (0.1-0.3 s here) stays under the larger of a loose bound and
# LOOSE times their p99 without readers (for a machine busier still).
P99_BOUND = 2.0  # seconds
LOOSE = 10.0
SLACK = 3.0  # [full]: p99 with slow readers within this of the p99 without
FLOOR = 0.05  # seconds: a p99 below this counts as this (noise, not starvation)
SHARE = 0.5  # [full]: with slow readers the others get at least this share of the turns without


@pytest.mark.parametrize(
    ("seconds", "workers", "readers", "compare"),
    [pytest.param(4, 6, 12, False, id="fast"), pytest.param(12, 8, 40, True, id="full", marks=pytest.mark.faults)],
)
def test_slow_readers_do_not_starve_other_clients(fresh_rig: Rig, seconds, workers, readers, compare):  # type: ignore[no-untyped-def]
    profile = LoadProfile(workers=workers, clean=True, agents={AGENT_LITELLM: 1, AGENT_DIRECT: 1},
                          idempotent_share=0.0, shared_share=0.0)
    # The first phase also warms the service's connection pools, which would count as fd drift.
    phases = {"without readers": scenario.run(fresh_rig, "baseline", profile, seconds, record=False)}
    if compare:
        phases[f"with {readers} fast readers"] = scenario.run(
            fresh_rig, "control", profile, seconds, fast_readers=readers, seed=3, record=False)
    closed_before = fresh_rig.upstream.stats().closed_streams
    slowed = phases[f"with {readers} slow readers"] = scenario.run(
        fresh_rig, "slow readers", profile, seconds, slow_readers=readers, seed=2, record=False, until_stalled_first=True)
    for outcome in phases.values():
        scenario.assert_nothing_lost(outcome)
    # Their upstream streams were cancelled when they left (no leaked model calls).
    deadline = time.monotonic() + 10
    while fresh_rig.upstream.stats().closed_streams - closed_before < readers and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = fresh_rig.upstream.stats().closed_streams - closed_before
    stall = slowed.stall
    assert stall is not None
    turns = {name: len(outcome.ledger.latencies) for name, outcome in phases.items()}
    p99 = {name: percentile(outcome.ledger.latencies, 0.99) for name, outcome in phases.items()}
    report.record(
        f"slow readers ×{readers}", faults={"slow reader": readers},
        requests=sum(o.ledger.requests for o in phases.values()),
        acknowledged=sum(o.verdict.acknowledged for o in phases.values()),
        lost=sum(len(o.verdict.lost) for o in phases.values()),
        errors_5xx={k: v for o in phases.values() for k, v in o.ledger.merge_5xx().items()},
        rss_drift_kb=slowed.rss_drift_kb, fd_drift=slowed.fd_drift,
        notes="; ".join([
            f"their streams stalled after {stall.seconds:.1f} s (the fake wrote each {stall.rate_before:.2f} "
            f"chunks/s before the load, {stall.rate_during:.2f} during it)",
            *(f"{turns[name]} turns, p99 {p99[name] * 1000:.0f} ms {name}" for name in phases),
            f"{cancelled}/{readers} upstream streams closed when they left",
        ]),
    )

    # The premise: every slow reader's stream stopped before the load, and stayed stopped.
    assert stall.streams == readers and stall.streams_after == readers, \
        f"{stall.streams}, then {stall.streams_after}, of {readers} long streams open at the fake"
    assert stall.rate_before < scenario.STALLED, \
        f"the fake still wrote {stall.rate_before:.1f} chunks/s to each slow reader's stream after {stall.seconds:.0f} s"
    assert stall.rate_during < scenario.STALLED, \
        f"the fake wrote {stall.rate_during:.1f} chunks/s to each slow reader's stream during the load"
    # Behaviour: the others were served (assert_nothing_lost: every turn answered, none hung), promptly.
    with_slow = f"with {readers} slow readers"
    assert p99[with_slow] < max(P99_BOUND, LOOSE * p99["without readers"]), f"p99: {p99}"
    assert cancelled >= readers, f"only {cancelled} of {readers} slow readers' upstream streams were closed"
    assert slowed.fd_drift < 20, f"{slowed.fd_drift} more open fds after the slow readers left"
    if compare:  # make faults only: these ratios depend on the machine's speed and what else runs
        assert turns[with_slow] > SHARE * turns["without readers"], f"turns: {turns}"
        assert p99[with_slow] <= SLACK * max(p99["without readers"], FLOOR), f"p99: {p99}"
