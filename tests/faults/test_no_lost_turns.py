"""Every fault at once — Redis SIGKILLed twice, the upstream failing every way, slow readers — under
mixed concurrent load: every acknowledged turn is afterwards readable exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults import scenario
from tests.faults.harness import Rig
from tests.faults.load import LoadProfile

MIX = {"429": 0.04, "500": 0.04, "slow": 0.02, "reset": 0.02, "drop": 0.04}


@pytest.mark.faults
@pytest.mark.timeout(300)
def test_no_acknowledged_turn_is_lost_under_every_fault_at_once(fresh_rig: Rig) -> None:
    fresh_rig.upstream.set_mix(**MIX)

    async def outages(run: scenario.Run) -> None:
        await asyncio.sleep(12)
        await run.kill_redis_for(2.0)
        await asyncio.sleep(20)
        await run.kill_redis_for(1.0)

    outcome = scenario.run(fresh_rig, "everything at once", LoadProfile(workers=16), 50, outages, slow_readers=6)
    fresh_rig.upstream.quiet()
    scenario.assert_nothing_lost(outcome)
    assert outcome.run.rig.redis.kills >= 2
    assert outcome.ledger.busy > 0, "no turn ever met a busy conversation: the load did not share any"
    assert outcome.ledger.disconnects > 0, "no idempotent stream was left midway and retried"
