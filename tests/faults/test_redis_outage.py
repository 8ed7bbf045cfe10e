"""Redis SIGKILLed under load and restarted: 503s (or in-stream SERVICE_UNAVAILABLE) while it is down,
nothing partial written, and the service recovers by itself with every acknowledged turn kept."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid

import httpx
import pytest

from tests.faults import scenario
from tests.faults.harness import AGENT_DIRECT, AGENT_FALLBACK, AGENT_LITELLM, Rig
from tests.fake_openai import reply
from tests.faults.load import LoadProfile

LEASE_SECONDS = 3  # CHATSPARK_LEASE_SECONDS of the rig
SETTLE_SECONDS = LEASE_SECONDS + 1.0  # after recovery, until no 503 may come (see below)
AFTER_OUTCOMES = 8  # outcomes read after that
OUTAGE_OUTCOMES = {"503 SERVICE_UNAVAILABLE", "stream SERVICE_UNAVAILABLE"}


@pytest.mark.parametrize(
    ("seconds", "workers", "outages"),
    [
        pytest.param(12, 8, [(2.5, 2.0)], id="fast"),
        pytest.param(30, 16, [(5, 3.0), (17, 1.0)], id="full", marks=pytest.mark.faults),
    ],
)
def test_a_redis_killed_mid_load_answers_503_then_recovers_without_losing_a_turn(fresh_rig: Rig, seconds, workers, outages):  # type: ignore[no-untyped-def]
    recoveries: list[float] = []

    async def outage(run: scenario.Run) -> None:
        # The load runs until this script says enough: on a loaded machine (a Redis fsyncing
        # behind other processes' disk writes) the service can take seconds more to answer again,
        # and a fixed-length load once ended before the checks below had anything to read.
        run.load.stop_at = math.inf
        elapsed = 0.0
        for at, down in outages:
            await asyncio.sleep(max(at - elapsed, 0))
            recoveries.append(await run.kill_redis_for(down))
            elapsed = time.monotonic() - run.started
            settled = run.marks[f"recovered{len(recoveries)}"] + SETTLE_SECONDS
            deadline = time.monotonic() + 60
            while len(run.outcomes_between(settled, math.inf)) < AFTER_OUTCOMES and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - run.started
        run.load.stop_at = max(time.monotonic(), run.started + seconds)

    # Only Redis fails here: no upstream faults, no refused models.
    profile = LoadProfile(workers=workers, clean=True, agents={AGENT_LITELLM: 3, AGENT_FALLBACK: 2, AGENT_DIRECT: 4})
    outcome = scenario.run(fresh_rig, f"redis SIGKILL ×{len(outages)} ({outcomes_id(outages)})", profile, seconds, outage)
    run, ledger = outcome.run, outcome.ledger

    scenario.assert_nothing_lost(outcome)
    assert "health-not-degraded" not in run.marks, run.notes
    for n in range(1, len(outages) + 1):
        during = run.outcomes_between(run.marks[f"kill{n}"] + 0.3, run.marks[f"restart{n}"])
        assert during, "no request met the outage"
        assert set(during) <= OUTAGE_OUTCOMES, f"while Redis was down: {sorted(set(during))}"
        # Within one lease term of the recovery, a retry of a turn that was running when Redis died
        # may still meet its runner's lease and get a 503 once it lapses; after that, none.
        settled = run.marks[f"recovered{n}"] + SETTLE_SECONDS
        after = run.outcomes_between(settled, math.inf)[:AFTER_OUTCOMES]
        assert "200" in after or "stream done" in after, f"no turn succeeded after recovery: {after[:20]}"
        assert not set(after) & OUTAGE_OUTCOMES, f"503s after the service said healthy: {after.count('503 SERVICE_UNAVAILABLE')}"
    assert max(recoveries) < 5, f"health came back only after {max(recoveries):.1f} s"
    assert ledger.errors_5xx.keys() <= {"503 SERVICE_UNAVAILABLE", "stream SERVICE_UNAVAILABLE"}


def outcomes_id(outages: list[tuple[float, float]]) -> str:
    return ", ".join(f"{down:g} s down" for _, down in outages)


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_a_stream_whose_redis_dies_midway_ends_with_an_error_event_and_done(fresh_rig: Rig, idempotent):  # type: ignore[no-untyped-def]
    # The fake's own echo, slowed down (so the store's integrity check knows the answer).
    message = f"stream through an outage {uuid.uuid4().hex[:6]}"
    fresh_rig.upstream.enqueue(reply(f"You said: {message}. I saw 2 messages.", chunks=6, gap=0.4))
    headers = {"authorization": f"Bearer {fresh_rig.key}", **({"idempotency-key": uuid.uuid4().hex} if idempotent else {})}
    body = {"message": message, "stream": True}
    data = []
    try:
        with httpx.stream("POST", f"{fresh_rig.service.base_url}/api/v1/agents/{AGENT_DIRECT}/chat", json=body,
                          headers=headers, timeout=20) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data.append(line[6:])
                    if len(data) == 1:
                        fresh_rig.redis.kill()
    finally:
        if fresh_rig.redis.process is None or fresh_rig.redis.process.poll() is not None:
            fresh_rig.redis.restart()
    assert data[-1] == "[DONE]", f"the stream ended without [DONE]: {data[-2:]}"
    failure = json.loads(data[-2])
    assert failure["error"]["code"] == "STREAMING_ERROR"
    assert failure["error"]["details"] == {"cause": "SERVICE_UNAVAILABLE"}
    assert failure["error"]["retryable"] is True
