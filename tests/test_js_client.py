"""The JavaScript client (clients/js, `@chatspark/client`) against a live Chatspark: a real uvicorn
on a socket, a real Redis, the fake provider. The tests are the client's own, in Node's built-in
test runner (clients/js/test/*.test.mjs); this file starts what they run against — the server, keys
(one of them limited to 1 request a minute), an agent on the offline model, the provider's script and
two TCP proxies that cut a stream mid-way — and runs `node --test` on them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatspark.errors import ERROR_STATUS
from tests.fake_openai import reply
from tests.test_python_client import STREAMED, DroppingProxy

JS_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)
    if found is None:
        message = "node (20+) is needed to run the JavaScript client's tests (clients/js/test)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"the JavaScript client needs Node 20 or newer, found {version}")
    return found


def test_the_js_client_passes_its_node_test_suite_against_a_live_server(node: str, live_server: Any,
                                                                       fake_openai: Any) -> None:
    key = live_server.key()
    with httpx.Client(base_url=live_server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        created = http.post("/api/v1/agents", json={"name": "JS client tests", "model": "local"})
        assert created.status_code == 201, created.text
        agent_id = created.json()["agent"]["id"]
    # The provider's answers, in the order clients/js/test/stream.test.mjs asks for them.
    fake_openai.enqueue(
        reply(STREAMED, chunks=8, gap=0.1),  # the stream cut by `resumed` and resumed
        reply("started"),  # the busy-conversation test: its first turn,
        reply("one two three four five six", chunks=6, gap=0.3),  # the slow turn holding it (~1.8 s),
        reply("after you"),  # the turn retried until the slow one ended
        reply(STREAMED, chunks=8, gap=0.1),  # the stream cut by `unresumable`, not retried
    )
    resumed = DroppingProxy(live_server.port)
    unresumable = DroppingProxy(live_server.port)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CHATSPARK_BASE_URL": live_server.base_url,
        "CHATSPARK_API_KEY": key,
        "CHATSPARK_AGENT_ID": str(agent_id),
        "CHATSPARK_PROVIDER_AGENT_ID": "2",
        "CHATSPARK_LIMITED_KEY": live_server.key(rate_limit=1),
        "CHATSPARK_ERROR_STATUS": json.dumps(ERROR_STATUS),
        "CHATSPARK_PROXY_URL": resumed.base_url,
        "CHATSPARK_PROXY2_URL": unresumable.base_url,
    }
    started = time.monotonic()
    try:
        result = subprocess.run([node, "--test", "--test-reporter=spec", "test/"], cwd=JS_CLIENT, env=env,
                                capture_output=True, text=True, timeout=180)
    finally:
        resumed.close()
        unresumable.close()
    output = f"node --test exited {result.returncode} after {time.monotonic() - started:.1f} s\n{result.stdout}\n{result.stderr}"
    print(output)
    assert result.returncode == 0, output
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, output
    assert "# skipped 0" in result.stdout or "ℹ skipped 0" in result.stdout, output  # every test ran here
    # Each proxy cut its one stream; the resumed one saw the client come back once, the other did not.
    assert (resumed.cuts_left, resumed.connections) == (0, 2), output
    assert (unresumable.cuts_left, unresumable.connections) == (0, 1), output
    assert len(fake_openai.requests) == 5, output  # the resume did not run the turn again


def test_the_package_has_no_dependencies_and_declares_its_types() -> None:
    package = json.loads((JS_CLIENT / "package.json").read_text())
    assert package["type"] == "module"
    assert not package.get("dependencies") and not package.get("peerDependencies")
    assert package["exports"]["."] == {"types": "./index.d.ts", "default": "./src/index.js"}
    assert (JS_CLIENT / package["types"]).exists()
    source = (JS_CLIENT / "src" / "index.js").read_text()
    assert [line for line in source.splitlines() if line.startswith(("import ", "export * from"))] == []
