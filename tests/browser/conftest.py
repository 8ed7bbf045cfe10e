"""A real browser for the widget: Debian's Chromium driven by Playwright, the app on a real socket,
and host pages served from other origins than the API (other ports of 127.0.0.1).

One headless Chromium per module, a fresh context (so fresh localStorage) per test. Without
Chromium the tests skip with what to install, except under CI=true, where they fail: the browser
tests never skip in CI (`make test` installs Chromium through tests/setup.sh).
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import RunningServer, free_port, make_config

CHROMIUM = os.environ.get("CHATSPARK_CHROMIUM", "/usr/bin/chromium")
NODE_PROJECT = Path(__file__).resolve().parent.parent / "node"


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the browser tests must run, never skip)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(admin_key: str) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop running in this thread while the browser is up: no
    # asyncio.run() works meanwhile. So it lives only as long as a module (the rest of the suite
    # runs after it is closed), and what needs asyncio.run here (storing a key) happens before.
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"the widget's browser tests need Chromium at {CHROMIUM}: `make test` installs Debian's "
                     "chromium when run as root, else `sudo apt-get install chromium` (or set CHATSPARK_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the widget's browser tests need playwright (the dev dependency group: `make install`)")
    with sync_playwright() as playwright:
        # Never Playwright's own browser download: Debian's Chromium, headless.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, from tests/node (`npm ci` at most once per lock file, like the SSE clients)."""
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("the accessibility test needs npm to install axe-core into tests/node")
    installed = NODE_PROJECT / "node_modules" / ".package-lock.json"  # npm ci writes it last
    lock = NODE_PROJECT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_PROJECT, check=True,
                       timeout=300)
    return (NODE_PROJECT / "node_modules" / "axe-core" / "axe.min.js").read_text()


@pytest.fixture(scope="module")
def widget_api(redis_url: str, key_prefix: str, shared_fake_openai: Any) -> Iterator[RunningServer]:
    """The app on a real port (a browser needs one), its provider models on the fake upstream through
    the direct OpenAI-compatible backend (no litellm import to wait for), widget limits no test meets
    unless it means to (every page of the session comes from 127.0.0.1)."""
    config = make_config(redis_url, f"{key_prefix}-browser", shared_fake_openai.base_url)
    models = {name: msgspec.structs.replace(model, backend="openai") if model.backend == "litellm" else model
              for name, model in config.models.items()}
    widget = msgspec.structs.replace(config.widget, visitor_rate_per_minute=1000, address_rate_per_minute=100_000)
    running = RunningServer(msgspec.structs.replace(config, models=models, widget=widget)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_key(widget_api: RunningServer) -> str:
    return widget_api.key()


@pytest.fixture
def api(widget_api: RunningServer, fake_openai: Any, provider_key: str) -> RunningServer:
    """`widget_api` with the fake upstream reset for this test and the provider key set."""
    return widget_api


@pytest.fixture
def admin(api: RunningServer, admin_key: str) -> Iterator[httpx.Client]:
    """The server side: a key with every scope."""
    with api.client(admin_key) as client:
        yield client


class HostSite:
    """A plain web server on its own 127.0.0.1 port (so its own origin) serving the pages a test puts."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                page = site.pages.get(self.path.split("?")[0])
                body = (page or "not found").encode()
                self.send_response(200 if page is not None else 404)
                kind = "text/javascript" if self.path.endswith(".js") else "text/html"
                self.send_header("content-type", kind + "; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="host-site", daemon=True)
        self._thread.start()

    def put(self, path: str, html: str) -> str:
        self.pages[path] = html
        return self.origin + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def host_site() -> Iterator[HostSite]:
    """The shop whose origin the test agents allow."""
    site = HostSite()
    yield site
    site.close()


@pytest.fixture(scope="session")
def stranger_site() -> Iterator[HostSite]:
    """Another origin, allowed by no agent."""
    site = HostSite()
    yield site
    site.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context (empty localStorage), desktop-sized; `page.dialogs` collects every
    alert/confirm/prompt (dismissed), `page.errors` every uncaught error of the page."""
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    opened.dialogs = []
    opened.errors = []

    def on_dialog(dialog: Any) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


@pytest.fixture
def make_agent(admin: httpx.Client, host_site: HostSite) -> Callable[..., int]:
    """A public agent allowing the host site, answering through the fake upstream."""

    def make(**fields: Any) -> int:
        body = {"name": "Shop helper", "botName": "Shopbot", "model": "gpt-4o-mini",
                "allowedOrigins": [host_site.origin], **fields}
        created = admin.post("/api/v1/agents", json=body)
        assert created.status_code == 201, created.text
        return created.json()["agent"]["id"]

    return make


EVENTS = ("user-message", "agent-response", "conversation-started", "lead-captured", "action-triggered")


def host_page(api_base: str, chatbot_id: str, data: dict[str, Any] | None = None, *, script: str | None = None,
              options: str = "") -> str:
    """A shop page with the two-line embed snippet, recording every widget event in window.events.
    `script`: where widget.js comes from (default: the API); `options`: more ChatSpark options (JS)."""
    listen = "".join(
        f"ChatSpark.on({name!r}, function (payload) {{ window.events.push([{name!r}, payload]); }});" for name in EVENTS
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example shop</title></head>
<body><main><h1>Example shop</h1><p>Things for sale.</p></main>
<script src="{script or api_base + '/widget.js'}"></script>
<script>
window.events = [];
{listen}
ChatSpark({{ chatbotId: {chatbot_id!r}, data: {msgspec.json.encode(data or {}).decode()}{options} }}).render("body");
</script>
</body></html>"""
