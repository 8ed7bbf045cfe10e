"""Closed-loop throughput with wrk (C, epoll): far cheaper per request than any Python client, so the
CPU it takes from the 2 cores shared with the server stays small. Used for turns/s and the sweep.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from typing import Any

from bench.scenarios import Probe, request_spec, Scenario
from bench.targets import Server

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(spec: dict[str, Any]) -> str:
    headers = {"content-type": "application/json", **spec.get("headers", {})}
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(spec['body']))}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run(server: Server, s: Scenario, connections: int, seconds: float) -> dict[str, Any]:
    """Turns/s, latency and CPU per turn (all server processes) for `s` at `connections` connections.
    wrk takes whole seconds only."""
    spec = request_spec(server, s)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua(spec))
        script.flush()
        probe = Probe(server, None)
        before = probe.read()
        done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
                               "-s", script.name, f"http://127.0.0.1:{server.port}{spec['path']}"],
                              capture_output=True, text=True, timeout=seconds + 60)
        after = probe.read()
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or out.strip()}")
    counted = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    assert counted is not None
    total, elapsed = int(counted.group(1)), _seconds(counted.group(2) + counted.group(3))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    percent = {p: _seconds(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M)}
    ok = max(1, total - non_2xx)
    # Only answers that succeeded count as turns; errors are reported beside them.
    return {"connections": connections, "turns_per_s": (total - non_2xx) / elapsed, "requests": total, "non_2xx": non_2xx, "socket_errors": errors,
            "p50": percent.get("50"), "p99": percent.get("99"), "cpu_per_turn": (after["cpu"] - before["cpu"]) / ok}
