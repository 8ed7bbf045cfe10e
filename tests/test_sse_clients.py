"""Browser-side SSE clients read a live stream: what they hand to a web app is what we assert on.

`@microsoft/fetch-event-source` dispatches a message at every blank line, data or not, so a comment
followed by a blank line reaches the app as an empty message; `eventsource-parser` follows the
spec. Both run under Node from tests/node (exact versions, package-lock.json committed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import reply

NODE_PROJECT = Path(__file__).parent / "node"
WORDS = "one two three four five"


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/node's packages installed (`npm ci`, at most once per lock file)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed to run the browser SSE clients of tests/node (Node 20+)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    installed = NODE_PROJECT / "node_modules" / ".package-lock.json"  # npm ci writes it last
    lock = NODE_PROJECT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_PROJECT, check=True, timeout=300
        )
    return node


def read_with_browser_clients(node: str, base_url: str, key: str) -> dict[str, Any]:
    """One stream read by each client (two turns), as the JSON read-stream.mjs prints."""
    done = subprocess.run(
        [node, "read-stream.mjs", f"{base_url}/api/v1/agents/2/chat", key, "hi"],
        cwd=NODE_PROJECT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_whole_answer(datas: list[str]) -> None:
    assert datas[-1] == "[DONE]"
    payloads = [json.loads(d) for d in datas[:-1]]
    assert payloads[-1]["done"] is True
    assert "".join(p["delta"] for p in payloads[:-1]) == WORDS


def test_browser_clients_get_every_delta_and_no_empty_message(start_live_server, fake_openai, provider_key, node):  # type: ignore[no-untyped-def]
    # Pings far more often than the model speaks: the opening one and several between deltas.
    server = start_live_server(fake_openai.base_url, ping_seconds=0.05)
    fake_openai.enqueue(reply(WORDS, gap=0.15), reply(WORDS, gap=0.15))
    seen = read_with_browser_clients(node, server.base_url, server.key())

    messages = seen["fetchEventSource"]["messages"]
    assert [m for m in messages if not m["data"]] == []  # a ping never reaches the app as a message
    assert_one_whole_answer([m["data"] for m in messages])
    assert [m["id"] for m in messages] == [str(n) for n in range(1, len(messages) + 1)]

    parsed = seen["eventsourceParser"]
    assert parsed["status"] == 200
    assert_one_whole_answer([e["data"] for e in parsed["events"]])
    assert len(parsed["comments"]) >= 2 and set(parsed["comments"]) == {"ping"}  # heartbeats are comments
