"""The JavaScript client (clients/js, `@chatspark/client`) against a live Chatspark: a real uvicorn
on a socket, a real Redis, the fake provider. The tests are the client's own, in Node's built-in
test runner (clients/js/test/*.test.mjs); this file starts what they run against — the server, keys
(one of them limited to 1 request a minute), an agent on the offline model, the provider's script and
two TCP proxies that cut a stream mid-way — and runs `node --test` on them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatspark.errors import ERROR_STATUS
from tests.fake_openai import drop_mid_stream, error, reply
from tests.test_python_client import STREAMED, DroppingProxy

JS_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"


class RecordingProxy(DroppingProxy):
    """DroppingProxy, noting each request that came through: its request line and Last-Event-ID.
    (Node's fetch sometimes opens a connection it closes without sending anything: not counted.)"""

    def __init__(self, port: int) -> None:
        self.requests: list[tuple[str, str | None]] = []
        super().__init__(port)

    def _pump(self, source: Any, sink: Any, answers: bool) -> None:
        if not answers:
            try:
                first = source.recv(65536)
            except OSError:
                first = b""
            if first:
                head = first.decode("latin-1")
                resume = re.search(r"(?im)^last-event-id: *(\S+)", head)
                self.requests.append((head.split("\r\n", 1)[0], resume.group(1) if resume else None))
                sink.sendall(first)
        super()._pump(source, sink, answers)


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
        error(500),  # a stream whose turn fails before its first delta (the client asks again),
        reply("second time lucky"),
        drop_mid_stream(after_chunks=2),  # one that fails after two deltas (StreamingError, not again)
    )
    resumed = RecordingProxy(live_server.port)
    unresumable = RecordingProxy(live_server.port)
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
    chat = "POST /api/v1/agents/2/chat HTTP/1.1"
    assert resumed.cuts_left == 0 and resumed.requests == [(chat, None), (chat, "2")], f"{resumed.requests}\n{output}"
    assert unresumable.cuts_left == 0 and unresumable.requests == [(chat, None)], f"{unresumable.requests}\n{output}"
    assert len(fake_openai.requests) == 8, output  # the resume did not run the turn again


def run_snippet(node: str, live_server: Any, snippet: str, folder: Path) -> str:
    """The snippet as the READMEs say to run it: saved inside clients/js, where `@chatspark/client`
    resolves to the package itself (here a copy of it in a temporary folder, the repository left alone)."""
    package = folder / "js"
    shutil.copytree(JS_CLIENT, package, ignore=shutil.ignore_patterns("node_modules", "test*"))
    script = package / "try.mjs"
    script.write_text(snippet.replace("http://localhost:8000", live_server.base_url))
    env = {"CHATSPARK_API_KEY": live_server.key(), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run([node, str(script)], capture_output=True, text=True, env=env, cwd=folder, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_snippets_run(node: str, live_server: Any, tmp_path: Path) -> None:
    snippets = re.findall(r"```js\n(.*?)```", (JS_CLIENT / "README.md").read_text(), re.S)
    assert len(snippets) == 2  # the quick start, then the paging example (a fragment)
    out = run_snippet(node, live_server, snippets[0], tmp_path / "client-readme")
    assert "We are open Monday to Friday" in out and "We are closed on weekends" in out
    # The listing's first page: agent 1 is on it only on a server no other test added agents to.
    assert re.search(r"(?m)^\d+ \S", out) and "AgentNotFoundError AGENT_NOT_FOUND 404" in out

    readme = (JS_CLIENT.parent.parent / "README.md").read_text()
    section = readme.split("\n## JavaScript client\n", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```js\n(.*?)```", section, re.S)
    out = run_snippet(node, live_server, snippet, tmp_path / "readme")
    assert "We are open Monday to Friday" in out and "We are closed on weekends" in out


def test_the_type_declarations_check_with_typescript(node: str) -> None:
    """clients/js/test-types/usage.ts uses every method as a TypeScript user would, against the
    hand-written index.d.ts, under `strict`; its `@ts-expect-error` lines must be errors. TypeScript
    is the package's only devDependency (exact version in its package-lock.json), installed here
    with `npm ci` when the lock file changed."""
    npm = shutil.which("npm")
    if npm is None:
        message = "npm is needed to install TypeScript for the JavaScript client's type check"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    installed = JS_CLIENT / "node_modules" / ".package-lock.json"  # npm ci writes it last
    lock = JS_CLIENT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS_CLIENT, check=True,
                       capture_output=True, timeout=300)
    tsc = JS_CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
    result = subprocess.run([node, str(tsc), "-p", "test-types/tsconfig.json"], cwd=JS_CLIENT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_has_no_dependencies_and_declares_its_types() -> None:
    package = json.loads((JS_CLIENT / "package.json").read_text())
    assert package["type"] == "module"
    assert not package.get("dependencies") and not package.get("peerDependencies")
    assert list(package.get("devDependencies", {})) == ["typescript"]  # the type check's, not installed with it
    assert package["exports"]["."] == {"types": "./index.d.ts", "default": "./src/index.js"}
    assert (JS_CLIENT / package["types"]).exists()
    source = (JS_CLIENT / "src" / "index.js").read_text()
    assert [line for line in source.splitlines() if line.startswith(("import ", "export * from"))] == []
