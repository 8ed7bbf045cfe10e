"""What `[store] wait_replicas = 1` costs a turn: JSON turns through Sentinel to a master with two
replicas on loopback (started here), alternating blocks with and without the WAIT.

    .venv/bin/python -m bench.wait_replicas

The app runs in this process (tests/in_process.py); latency is the client's wall time per turn
(local model), CPU the process's. Loopback replicas acknowledge in well under a millisecond: over a
network the WAIT costs at least one replica round trip more.
"""

from __future__ import annotations

import logging
import secrets
import statistics
import time

import msgspec

from bench.widget_cost import _agent, _client, _key
from chatspark.config import load_config
from chatspark.web import create_app
from tests.faults.test_failover import SentinelSetup
from tests.in_process import InProcessApp

BLOCKS, TURNS = 6, 200


def main() -> None:
    logging.disable(logging.CRITICAL)
    setup = SentinelSetup()
    try:
        results: dict[int, dict[str, list[float]]] = {0: {"p50": [], "cpu": []}, 1: {"p50": [], "cpu": []}}
        prefix = f"csbench-wait-{secrets.token_hex(4)}"
        apps = {}
        for wait in (0, 1):
            config = load_config(environ={})
            store = msgspec.structs.replace(config.store, url=setup.url, prefix=prefix, wait_replicas=wait)
            config = msgspec.structs.replace(config, store=store)
            apps[wait] = (config, InProcessApp(create_app(config)).start())
        key = _key(apps[0][0], None)
        with _client(apps[0][1], key) as admin:
            agent = _agent(admin)
        for block in range(BLOCKS):
            for wait in (0, 1) if block % 2 == 0 else (1, 0):
                with _client(apps[wait][1], key) as http:
                    times = []
                    started = time.process_time()
                    for _ in range(TURNS):
                        t = time.perf_counter()
                        answer = http.post(f"/api/v1/agents/{agent}/chat", json={"message": "When are you open?"})
                        times.append(time.perf_counter() - t)
                        assert answer.status_code == 200, answer.text
                    results[wait]["cpu"].append((time.process_time() - started) / TURNS * 1000)
                    results[wait]["p50"].append(statistics.median(times) * 1000)
        print(f"JSON turn through Sentinel (master + 2 replicas on loopback), median of {BLOCKS - 1} blocks of {TURNS}:")
        for wait, r in results.items():
            print(f"  wait_replicas = {wait}: p50 {statistics.median(r['p50'][1:]):.2f} ms, "
                  f"CPU {statistics.median(r['cpu'][1:]):.2f} ms")
        for _, app in apps.values():
            app.stop()
    finally:
        setup.stop()


if __name__ == "__main__":
    main()
