"""Pages and websites ingested through the API from real HTTP servers on 127.0.0.1, and jobs that
survive the replica running them being killed mid-fetch."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_training import NO_ANSWER, ask, wait_until_done

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "/": "<html><head><title>Acme Docs</title></head><body><nav>Home | Pricing</nav><main><h1>Acme Docs</h1>"
         "<p>Start with the <a href='/install'>installation guide</a> or read about "
         "<a href='/billing'>billing</a>.</p></main><footer>(c) Acme</footer></body></html>",
    "/install": "<html><head><title>Installing Acme</title></head><body><main><h1>Installing Acme</h1>"
                "<p>Download the Acme installer and run it. The installer needs 2 GB of free disk space and "
                "finishes in about four minutes.</p></main></body></html>",
    "/billing": "<html><head><title>Billing</title></head><body><main><h1>Billing</h1><p>Acme invoices are "
                "sent on the fifth day of each month. Pay by card or by bank transfer.</p></main></body></html>",
    "/secret": "<html><body><main><h1>Secret</h1><p>The vault code is 4242.</p></main></body></html>",
    "/robots.txt": "User-agent: *\nDisallow: /secret\n",
}


class Site:
    """A website on 127.0.0.1 that records requests; `/install` can be held until released."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.held = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.requests.append(self.path)
                if self.path == "/install" and not site.hold.is_set():
                    site.held.set()
                    site.hold.wait(30)
                body = PAGES.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                kind = "text/plain" if self.path.endswith(".txt") else "text/html; charset=utf-8"
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    running = Site()
    yield running
    running.close()


@pytest.fixture
def private_ok(start_server, fake_openai, provider_key, key_prefix):  # type: ignore[no-untyped-def]
    """A server whose fetches may reach 127.0.0.1 (the guard is on in the shipped config), on a
    prefix of its own: replicas on one store share the ingestion jobs, and the suite's other
    servers (guard on) would take its jobs and refuse the fetches."""
    return start_server(fake_openai.base_url, knowledge={"allow_private_urls": True}, prefix=f"{key_prefix}-fetch")


def new_agent(http) -> str:  # type: ignore[no-untyped-def]
    made = http.post("/api/v1/agents", json={"name": "kb", "model": "local", "botNoAnswer": NO_ANSWER})
    return f"/api/v1/agents/{made.json()['agent']['id']}"


def test_a_page_trains_and_answers_with_its_url(private_ok, site):  # type: ignore[no-untyped-def]
    with private_ok.client(private_ok.key()) as http:
        agent = new_agent(http)
        added = http.post(f"{agent}/training", json={"source": "install", "type": "page", "url": f"{site.url}/install"})
        assert added.status_code == 201, added.text
        done = wait_until_done(http, agent, added.json()["source"]["id"])
        assert done["status"] == "completed" and done["title"] == "Installing Acme"
        assert done["trainingUrl"] == f"{site.url}/install"
        answer = ask(http, agent, "How much free disk space does the installer need?")
        assert "2 GB" in answer["text"]
        assert answer["sources"][0]["url"] == f"{site.url}/install"


def test_a_website_crawls_its_own_pages_and_honours_robots_txt(private_ok, site):  # type: ignore[no-untyped-def]
    with private_ok.client(private_ok.key()) as http:
        agent = new_agent(http)
        added = http.post(f"{agent}/training", json={"source": "site", "type": "website", "url": f"{site.url}/"})
        done = wait_until_done(http, agent, added.json()["source"]["id"])
        assert done["status"] == "completed" and done["dataCount"] >= 3
        assert "/secret" not in site.requests and {"/", "/install", "/billing"} <= set(site.requests)
        assert "fifth day" in ask(http, agent, "When are invoices sent?")["text"]


def test_a_missing_page_fails_with_a_reason(private_ok, site):  # type: ignore[no-untyped-def]
    with private_ok.client(private_ok.key()) as http:
        agent = new_agent(http)
        added = http.post(f"{agent}/training", json={"source": "gone", "type": "page", "url": f"{site.url}/nope"})
        done = wait_until_done(http, agent, added.json()["source"]["id"])
        assert done["status"] == "failed" and "404" in done["error"] and done["dataCount"] is None


def test_with_the_guard_on_a_name_for_this_machine_is_refused_before_any_request(client, site):  # type: ignore[no-untyped-def]
    agent = new_agent(client)
    port = site.url.rsplit(":", 1)[1]
    refused = client.post(f"{agent}/training", json={"source": "x", "type": "page", "url": f"http://localhost.:{port}/"})
    assert refused.status_code == 400 and "url" in refused.json()["error"]["details"]["fields"]
    # A name that passes the syntax check fails at the fetch (here: no DNS; on a machine where it
    # resolves to loopback, the guarded resolver refuses it: tests/test_knowledge_fetch.py).
    sneaky = client.post(f"{agent}/training", json={"source": "y", "type": "page", "url": "http://localhost.localdomain/"})
    assert sneaky.status_code == 201
    assert wait_until_done(client, agent, sneaky.json()["source"]["id"])["status"] == "failed"
    assert site.requests == []


def test_a_job_whose_replica_is_killed_mid_fetch_is_finished_by_another(
    spawn_server, fake_openai, site, tmp_path, redis_url, key_prefix
):  # type: ignore[no-untyped-def]
    config = (ROOT / "config.toml").read_text()
    config = config.replace("allow_private_urls = false", "allow_private_urls = true\nclaim_idle_seconds = 1")
    config = config.replace('file = "chatspark/seed/', f'file = "{ROOT}/chatspark/seed/')
    path = tmp_path / "config.toml"
    path.write_text(config)
    prefix = f"{key_prefix}-crash"  # its own job stream (see private_ok)
    first = spawn_server(fake_openai.base_url, CHATSPARK_CONFIG=str(path), CHATSPARK_REDIS_PREFIX=prefix)
    key = put_key(redis_url, prefix)
    with first.client(key) as http:
        agent = new_agent(http)
        clean = http.post(f"{agent}/training", json={"source": "clean", "type": "website", "url": f"{site.url}/"})
        reference = wait_until_done(http, agent, clean.json()["source"]["id"])["dataCount"]
        site.hold.clear()
        crashed = http.post(f"{agent}/training", json={"source": "crashed", "type": "website", "url": f"{site.url}/"})
        assert crashed.status_code == 201
    assert site.held.wait(30), "the job never reached the held page"
    os.kill(first.process.pid, signal.SIGKILL)  # mid-fetch: the job is claimed and unacknowledged
    first.process.wait(10)
    second = spawn_server(fake_openai.base_url, CHATSPARK_CONFIG=str(path), CHATSPARK_REDIS_PREFIX=prefix)
    site.hold.set()
    with second.client(key) as http:
        done = wait_until_done(http, agent, crashed.json()["source"]["id"], timeout=60)
    assert done["status"] == "completed" and done["dataCount"] == reference


def put_key(redis_url: str, prefix: str) -> str:
    """A key in the spawned servers' store (same Redis, same prefix)."""
    from chatspark.apikeys import mint_key
    from chatspark.config import StoreConfig
    from chatspark.store import Store
    from chatspark.store.connection import connect

    plain, record = mint_key("live", rate_limit=1_000_000, monthly_cap=0)

    async def put() -> None:
        config = StoreConfig(url=redis_url, prefix=prefix)
        store = Store(connect(config), config)
        try:
            await store.keys.put(record)
        finally:
            await store.aclose()

    asyncio.run(put())
    return plain


def test_an_accepted_job_survives_a_redis_restart(start_server, fake_openai, provider_key, site):  # type: ignore[no-untyped-def]
    from tests.faults.harness import PrivateRedis  # append-only, fsync always: a SIGKILL keeps what it acknowledged

    redis = PrivateRedis().start()
    try:
        server = start_server(
            fake_openai.base_url, store_url=redis.url, knowledge={"allow_private_urls": True, "claim_idle_seconds": 1}
        )
        with server.client(server.key()) as http:
            agent = new_agent(http)
            site.hold.clear()
            added = http.post(f"{agent}/training", json={"source": "install", "type": "page", "url": f"{site.url}/install"})
            assert added.status_code == 201
            assert site.held.wait(30), "the job never reached the held page"
            redis.kill()  # mid-job: the job is delivered, not acknowledged
            redis.restart()
            site.hold.set()
            done = wait_until_done(http, agent, added.json()["source"]["id"], timeout=60)
        assert done["status"] == "completed" and done["dataCount"] >= 1
    finally:
        redis.stop()
