"""`python -m bench.knowledge [--quick]`: what knowledge costs, against a real `chatspark serve`.

1. A website (bench/help_site.py: 50 generated help pages on 127.0.0.1) from POST to `completed`.
2. Text ingestion throughput (chunks/s) of a ~1.5 MB text source per embedder: the offline
   wordllama, and litellm pointed at the repo's fake OpenAI server (tests/fake_openai.py).
3. The added latency and server CPU of a grounded turn: sequential JSON turns (a new conversation
   each) on agents with ~1k and ~10k chunks and on one with none, alternating, the `local` model.

Everything runs on 127.0.0.1 against the Redis at $REDIS_URL (default 127.0.0.1:6379) under a random
key prefix, deleted at the end. Prints a markdown table; a full run writes bench/results/knowledge.md
and knowledge.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import help_site, procstat, targets
from bench.targets import ROOT, VENV_BIN

RESULTS = ROOT / "bench" / "results"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NO_ANSWER = "Sorry, I could not find that in our help center."
MAX_SOURCE_BYTES = 1_900_000  # under [knowledge] max_text_bytes (2,000,000)
SLOW_SITE_SECONDS = 0.1  # the slow-site row: each page answered after this long

PLANS: dict[str, dict[str, Any]] = {
    # Full run: about a minute on 2 shared cores; quick: ~30 s, for development only.
    "full": {"turns": 1000, "warmup": 30, "text_bytes": 1_500_000, "chunk_targets": (1_000, 10_000)},
    "quick": {"turns": 40, "warmup": 5, "text_bytes": 300_000, "chunk_targets": (1_000,)},
}


# --- the server ----------------------------------------------------------------------------------


def bench_config(*, fake_embedder_base: str | None = None) -> str:
    """config.toml with what the bench needs: fetches from 127.0.0.1, 2 MB text bodies, warning logs
    (a log line per request would be charged to every turn), no seeded source (its job would run
    during the first measurement); with `fake_embedder_base`, the litellm embedder on the fake."""
    text = (ROOT / "config.toml").read_text()
    replacements = [
        ("allow_private_urls = false", "allow_private_urls = true"),
        ('log_level = "info"', 'log_level = "warning"'),
        ("max_body_bytes = 1048576", "max_body_bytes = 4194304"),
    ]
    for old, new in replacements:
        if old not in text:
            raise RuntimeError(f"config.toml no longer has {old!r}: update bench/knowledge.py")
        text = text.replace(old, new)
    text = re.sub(r"\[\[knowledge\.seed\]\]\n(?:[a-z_]+ = .*\n)+", "", text)
    if fake_embedder_base is not None:
        text = text.replace('embedder = "offline"', 'embedder = "fake"')
        text += ('\n[embedders.fake]\nkind = "litellm"\nprovider_model = "openai/text-embedding-3-small"\n'
                 f'api_base = "{fake_embedder_base}"\napi_key_env = "BENCH_EMBEDDER_KEY"\ndimensions = 256\n')
    return text


class Chatspark:
    """One `chatspark serve` (1 worker) on a free port, its own config and key prefix."""

    def __init__(self, name: str, config_text: str, prefix: str) -> None:
        config = targets.workdir() / f"{name}.toml"
        config.write_text(config_text)
        self.name = name
        self.prefix = prefix
        self.env = {"CHATSPARK_CONFIG": str(config), "REDIS_URL": REDIS_URL, "CHATSPARK_REDIS_PREFIX": prefix,
                    "BENCH_EMBEDDER_KEY": "sk-bench", "LITELLM_OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
                    "LITELLM_LOG": "ERROR"}
        self.key = self._create_key()
        self.port = targets.free_port()
        started = time.perf_counter()
        self.proc = targets.spawn(name, [str(VENV_BIN / "chatspark"), "serve", "--port", str(self.port)], self.env)
        self.api = Api(self.port, self.key)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{targets.log_tail(name)}")
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{name} not ready after 120 s:\n{targets.log_tail(name)}")
            try:
                if self.api.get("/api/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        self.ready_s = time.perf_counter() - started
        # Background imports (litellm for the config's provider models) finish before we measure.
        self.settle_s = targets.settle(targets.Server(name, "chatspark", self.port, self.proc))
        self.pids = procstat.tree(self.proc.pid)

    def _create_key(self) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "chatspark"), "keys", "create", "--live", "--monthly-cap", "unlimited",
             "--rate-limit", "1000000", "--name", "bench-knowledge"],
            cwd=ROOT, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"chatspark keys create failed: {done.stderr.strip()[-800:]}")
        return done.stdout.strip().splitlines()[-1]

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.pids)

    def stop(self) -> None:
        self.api.close()
        targets.stop(self.proc)


class Api:
    """One keep-alive connection to the server; a call reconnects once if the server closed it idle."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        self._conn: http.client.HTTPConnection | None = None
        self._last = 0.0

    def get(self, path: str) -> tuple[int, Any]:
        return self._call("GET", path, None)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self._call("POST", path, json.dumps(body).encode())

    def _call(self, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        if self._conn is not None and time.monotonic() - self._last > 2.0:
            self.close()  # uvicorn closes idle connections after 5 s: never race it
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self._conn.request(method, path, body, self.headers)
                response = self._conn.getresponse()
                data = response.read()
                self._last = time.monotonic()
                return response.status, json.loads(data) if data else None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def new_agent(api: Api, name: str) -> int:
    status, body = api.post("/api/v1/agents", {"name": name, "model": "local", "botNoAnswer": NO_ANSWER})
    if status != 201:
        raise RuntimeError(f"creating an agent answered {status}: {body}")
    return int(body["agent"]["id"])


def add_source(api: Api, agent: int, body: dict[str, Any]) -> int:
    status, answer = api.post(f"/api/v1/agents/{agent}/training", body)
    if status != 201:
        raise RuntimeError(f"adding source {body['source']} answered {status}: {str(answer)[:300]}")
    return int(answer["source"]["id"])


def wait_done(api: Api, agent: int, training_ids: list[int], timeout: float = 180) -> dict[int, tuple[float, dict[str, Any]]]:
    """Polls every 50 ms; {training id: (perf_counter when first seen done, the source)}. Raises on failed."""
    done: dict[int, tuple[float, dict[str, Any]]] = {}
    deadline = time.perf_counter() + timeout
    while len(done) < len(training_ids):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"sources {set(training_ids) - set(done)} not done after {timeout:.0f} s")
        for tid in training_ids:
            if tid in done:
                continue
            status, body = api.get(f"/api/v1/agents/{agent}/training/{tid}")
            source = body["source"] if status == 200 else {}
            if source.get("status") == "failed":
                raise RuntimeError(f"source {tid} failed: {source.get('error')}")
            if source.get("status") == "completed":
                done[tid] = (time.perf_counter(), source)
        time.sleep(0.05)
    return done


# --- measurements --------------------------------------------------------------------------------


def measure_website(server: Chatspark, site: help_site.HelpSite, agent: int) -> dict[str, Any]:
    cpu0, started = server.cpu(), time.perf_counter()
    tid = add_source(server.api, agent, {"source": "help-center", "type": "website", "url": f"{site.url}/"})
    finished, source = wait_done(server.api, agent, [tid])[tid]
    hits = site.page_hits(since=started)
    seconds = finished - started
    return {
        "seconds": seconds, "site_delay_s": site.delay, "pages_fetched": len({path for _, path in hits}),
        "pages_on_site": len(site.pages) + 1, "page_bytes": site.page_bytes(),
        "chunks": source["dataCount"], "chunks_per_s": source["dataCount"] / seconds,
        "first_fetch_s": hits[0][0] - started if hits else None,
        "last_fetch_s": hits[-1][0] - started if hits else None,
        # After the last page arrived: extraction, chunking, embedding and writing (plus ≤ 50 ms of polling).
        "after_last_fetch_s": finished - hits[-1][0] if hits else None,
        "server_cpu_s": server.cpu() - cpu0,
    }


def measure_text(server: Chatspark, agent: int, slug: str, text: str) -> dict[str, Any]:
    cpu0, started = server.cpu(), time.perf_counter()
    tid = add_source(server.api, agent, {"source": slug, "type": "text", "data": text})
    posted = time.perf_counter()
    finished, source = wait_done(server.api, agent, [tid])[tid]
    seconds = finished - started
    return {"bytes": len(text.encode()), "chunks": source["dataCount"], "seconds": seconds,
            "post_s": posted - started, "chunks_per_s": source["dataCount"] / seconds,
            "mb_per_s": len(text.encode()) / 1e6 / seconds, "server_cpu_s": server.cpu() - cpu0}


def add_texts(server: Chatspark, agent: int, texts: dict[str, str]) -> dict[str, Any]:
    """Several text sources at once (the worker runs two jobs at a time): chunks and wall time."""
    if not texts:
        return {"sources": 0, "bytes": 0, "chunks": 0, "seconds": 0.0, "chunks_per_s": None, "server_cpu_s": 0.0}
    cpu0, started = server.cpu(), time.perf_counter()
    ids = [add_source(server.api, agent, {"source": slug, "type": "text", "data": text}) for slug, text in texts.items()]
    done = wait_done(server.api, agent, ids, timeout=240)
    seconds = max(t for t, _ in done.values()) - started
    chunks = sum(s["dataCount"] for _, s in done.values())
    return {"sources": len(texts), "bytes": sum(len(t.encode()) for t in texts.values()), "chunks": chunks,
            "seconds": seconds, "chunks_per_s": chunks / seconds if seconds else None,
            "server_cpu_s": server.cpu() - cpu0}


def website_breakdown(site: help_site.HelpSite) -> dict[str, Any]:
    """The website's pages extracted, chunked and embedded here in-process (no fetch, no Redis)."""
    from chatspark.config import KnowledgeConfig
    from chatspark.knowledge.chunking import chunk
    from chatspark.knowledge.extract import extract

    defaults = KnowledgeConfig()
    bodies = site.page_bodies()
    started = time.perf_counter()
    documents = [extract(body, "text/html; charset=utf-8", url) for url, body in bodies]
    extract_s = time.perf_counter() - started
    started = time.perf_counter()
    chunks = [c for d in documents for c in chunk(d, max_tokens=defaults.chunk_tokens,
                                                    overlap_tokens=defaults.chunk_overlap_tokens)]
    chunk_s = time.perf_counter() - started
    return {"pages": len(bodies), "chunks": len(chunks), "extract_s": extract_s, "chunk_s": chunk_s,
            "embed_s": _embed_seconds(chunks)}


def text_breakdown(text: str) -> dict[str, Any]:
    """Where a text source's ingestion time goes, measured here in-process on the same text: chunking
    and wordllama embedding alone (the server adds the Redis writes, thread hops and its loop)."""
    from chatspark.config import KnowledgeConfig
    from chatspark.knowledge.chunking import chunk
    from chatspark.knowledge.documents import Document

    defaults = KnowledgeConfig()
    started = time.perf_counter()
    chunks = chunk(Document(title=None, text=text), max_tokens=defaults.chunk_tokens,
                   overlap_tokens=defaults.chunk_overlap_tokens)
    chunk_s = time.perf_counter() - started
    return {"chunks": len(chunks), "chunk_s": chunk_s, "embed_s": _embed_seconds(chunks),
            "mean_chunk_bytes": statistics.fmean(len(c.text.encode()) for c in chunks)}


def _embed_seconds(chunks: list[Any]) -> float:
    """wordllama over the chunks as ingestion embeds them (title, heading, text; batches of 64)."""
    from backends.embedders.wordllama import embed_batch, load_model

    model = load_model("l2_supercat", 256)
    texts = ["\n".join(p for p in (c.title, c.heading, c.text) if p) for c in chunks]
    started = time.perf_counter()
    for first in range(0, len(texts), 64):
        embed_batch(model, texts[first:first + 64])
    return time.perf_counter() - started


def warm_ingestion(server: Chatspark) -> float:
    """One help page as a text source on its own agent: the first job after a start loads the embedder
    (and its libraries), which is not what the throughput rows are about. Its seconds are kept."""
    started = time.perf_counter()
    agent = new_agent(server.api, "kb-warm")
    tid = add_source(server.api, agent, {"source": "warm", "type": "text", "data": help_site.pages()[0].markdown()})
    wait_done(server.api, agent, [tid])
    return time.perf_counter() - started


def measure_turns(server: Chatspark, agents: dict[str, int], questions: list[str], turns: int,
                  warmup: int) -> dict[str, Any]:
    """`turns` JSON turns per agent after `warmup`, one at a time; each round asks every agent the same
    question, the order rotating each round so no agent always follows another."""
    names = list(agents)
    first_turn: dict[str, float] = {}
    for n in range(warmup):
        for name in names:
            latency, *_ = _turn(server, agents[name], questions[n % len(questions)])
            first_turn.setdefault(name, latency)
    samples: dict[str, dict[str, list[float]]] = {name: {"latency": [], "cpu": [], "sources": []} for name in names}
    for n in range(turns):
        question = questions[n % len(questions)]
        for name in names[n % len(names):] + names[:n % len(names)]:
            latency, cpu, sources = _turn(server, agents[name], question)
            for field, value in (("latency", latency), ("cpu", cpu), ("sources", sources)):
                samples[name][field].append(value)
    base = samples[names[0]]["latency"]
    out: dict[str, Any] = {}
    for name in names:
        latency = samples[name]["latency"]
        paired = [a - b for a, b in zip(latency, base, strict=True)]
        out[name] = {
            "turns": len(latency), "first_turn_s": first_turn.get(name),
            **{f"p{q}_s": quantile(latency, q / 100) for q in (50, 90, 99)}, "mean_s": statistics.fmean(latency),
            "added_p50_s": quantile(paired, 0.5), "added_p99_s": quantile(paired, 0.99),
            "server_cpu_per_turn_s": sum(samples[name]["cpu"]) / len(latency),
            "turns_with_sources": sum(1 for s in samples[name]["sources"] if s) / len(latency),
            "latency_us": [round(x * 1e6) for x in latency],
        }
    return out


def busy_text(server: Chatspark, quiet_agent: int, text: str) -> dict[str, Any]:
    """Turns of `quiet_agent` while a text source is ingested for another agent."""
    with BackgroundTurns(server, quiet_agent, help_site.questions()) as turns:
        measure_text(server, new_agent(server.api, f"kb-busy-{secrets.token_hex(2)}"), "export-1", text)
    return {**turns.summary(), "text_bytes": len(text.encode())}


class BackgroundTurns:
    """Sequential turns on one agent from a thread, on their own connection, while something else
    runs: what a user of another agent sees meanwhile."""

    def __init__(self, server: Chatspark, agent: int, questions: list[str]) -> None:
        self.api = Api(server.port, server.api.headers["authorization"].removeprefix("Bearer "))
        self.agent = agent
        self.questions = questions
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-turns", daemon=True)

    def __enter__(self) -> BackgroundTurns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.api.close()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            status, _ = self.api.post(f"/api/v1/agents/{self.agent}/chat", {"message": self.questions[n % len(self.questions)]})
            if status == 200:
                self.latencies.append(time.perf_counter() - started)
            n += 1

    def summary(self) -> dict[str, Any]:
        values = self.latencies or [math.nan]
        return {"turns": len(self.latencies), "p50_s": quantile(values, 0.5), "p99_s": quantile(values, 0.99),
                "max_s": max(values)}


def _turn(server: Chatspark, agent: int, question: str) -> tuple[float, float, int]:
    """(seconds, server CPU seconds, sources cited) of one new-conversation JSON turn."""
    cpu0 = server.cpu()
    started = time.perf_counter()
    status, body = server.api.post(f"/api/v1/agents/{agent}/chat", {"message": question})
    latency = time.perf_counter() - started
    cpu = server.cpu() - cpu0
    if status != 200:
        raise RuntimeError(f"a turn answered {status}: {str(body)[:300]}")
    return latency, cpu, len(body.get("sources") or [])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- the run -------------------------------------------------------------------------------------


class Run:
    def __init__(self, plan: dict[str, Any], with_litellm: bool) -> None:
        self.plan = plan
        self.with_litellm = with_litellm
        self.results: dict[str, Any] = {"ingestion": {}}
        self.prefixes: list[str] = []

    def prefix(self) -> str:
        self.prefixes.append(f"kbench-{secrets.token_hex(4)}")
        return self.prefixes[-1]

    def step(self, key: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        print(f"  {key} …", file=sys.stderr, flush=True)
        value = action()
        print(f"  {key}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        return value

    def offline(self, site: help_site.HelpSite) -> None:
        plan, ingestion = self.plan, self.results["ingestion"]
        with running(Chatspark("chatspark-offline", bench_config(), self.prefix())) as server:
            self.results["server_ready_s"] = server.ready_s
            ingestion["first_job_s"] = self.step("first job (loads the embedder)", lambda: warm_ingestion(server))
            api = server.api
            none, small, large = new_agent(api, "kb-none"), new_agent(api, "kb-small"), new_agent(api, "kb-large")
            ingestion["website"] = self.step("website", lambda: measure_website(server, site, small))
            ingestion["website"]["breakdown"] = self.step("website breakdown (in-process)", lambda: website_breakdown(site))
            text = help_site.bulk_text(1, plan["text_bytes"])
            ingestion["text_wordllama"] = self.step("text (wordllama)", lambda: measure_text(server, large, "export-1", text))
            ingestion["text_wordllama"]["breakdown"] = self.step("text breakdown (in-process)", lambda: text_breakdown(text))
            per_byte = ingestion["text_wordllama"]["chunks"] / ingestion["text_wordllama"]["bytes"]
            pages_md = "\n\n".join(page.markdown() for page in site.pages)
            small_target, *large_target = plan["chunk_targets"]
            have = {"kb-small": ingestion["website"]["chunks"], "kb-large": ingestion["text_wordllama"]["chunks"]}
            fills: dict[str, dict[str, str]] = {"kb-small": {}, "kb-large": {"help-pages": pages_md}}
            # The large agent knows the same pages (as one text) so the same questions find them.
            have["kb-large"] += round(len(pages_md.encode()) * per_byte)
            wanted = {"kb-small": small_target, "kb-large": large_target[0] if large_target else 0}
            seed = 2
            for name in ("kb-small", "kb-large"):
                missing = max(0, round((wanted[name] - have[name]) / per_byte))
                count = math.ceil(missing / MAX_SOURCE_BYTES)
                for _ in range(count):
                    fills[name][f"export-{seed}"] = help_site.bulk_text(seed, math.ceil(missing / count))
                    seed += 1
            ingestion["fill_small"] = self.step("fill kb-small", lambda: add_texts(server, small, fills["kb-small"]))
            if large_target:
                ingestion["fill_large"] = self.step("fill kb-large", lambda: add_texts(server, large, fills["kb-large"]))
            chunks = {"none": 0, "small": ingestion["website"]["chunks"] + ingestion["fill_small"]["chunks"]}
            agents = {"none": none, "small": small}
            if large_target:
                chunks["large"] = (ingestion["text_wordllama"]["chunks"] + ingestion["fill_large"]["chunks"])
                agents["large"] = large
            self.results["agent_chunks"] = chunks
            self.results["turns"] = self.step("turns", lambda: measure_turns(
                server, agents, help_site.questions(), plan["turns"], plan["warmup"]))
            self.results["busy"] = self.step("turns while ingesting", lambda: self.busy(server, site, none, text))
            site.delay = SLOW_SITE_SECONDS
            try:
                ingestion["website_slow"] = self.step("website, slow site", lambda: measure_website(
                    server, site, new_agent(api, "kb-slow-site")))
            finally:
                site.delay = 0.0

    def busy(self, server: Chatspark, site: help_site.HelpSite, quiet_agent: int, text: str) -> dict[str, Any]:
        """Turns of an agent without knowledge while another agent's website, then text, is ingested."""
        out: dict[str, Any] = {}
        questions = help_site.questions()
        with BackgroundTurns(server, quiet_agent, questions) as turns:
            time.sleep(0.5)
            out["idle"] = turns.summary()
        with BackgroundTurns(server, quiet_agent, questions) as turns:
            measure_website(server, site, new_agent(server.api, "kb-busy-website"))
        out["website"] = turns.summary()
        out["text"] = busy_text(server, quiet_agent, text)
        return out

    def litellm(self) -> None:
        from tests.fake_openai import FakeOpenAI

        fake = FakeOpenAI().start()
        try:
            config = bench_config(fake_embedder_base=fake.base_url)
            with running(Chatspark("chatspark-litellm", config, self.prefix())) as server:
                self.results["ingestion"]["first_job_litellm_s"] = warm_ingestion(server)
                agent = new_agent(server.api, "kb-litellm")
                text = help_site.bulk_text(1, self.plan["text_bytes"])
                result = self.step("text (litellm → fake)", lambda: measure_text(server, agent, "export-1", text))
                result["embedding_requests"] = len(fake.embedding_requests)
                self.results["ingestion"]["text_litellm_fake"] = result
                quiet = new_agent(server.api, "kb-none")
                self.results.setdefault("busy", {})["text_litellm"] = self.step(
                    "turns while ingesting (litellm)", lambda: busy_text(server, quiet, text))
        finally:
            fake.stop()

    def cleanup(self) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        deleted = 0
        for prefix in self.prefixes:
            for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
                batch = list(client.scan_iter(match=pattern, count=1000))
                for first in range(0, len(batch), 500):
                    deleted += client.delete(*batch[first:first + 500])
        client.close()
        self.results["redis_keys_deleted"] = deleted


@contextmanager
def running(server: Chatspark) -> Iterator[Chatspark]:
    try:
        yield server
    finally:
        server.stop()


# --- the report ----------------------------------------------------------------------------------


def _ms(value: Any, digits: int = 2) -> str:
    return "–" if not isinstance(value, int | float) else f"{value * 1000:.{digits}f}"


def _n(value: Any, digits: int = 0) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def table(results: dict[str, Any]) -> str:
    ing = results.get("ingestion", {})
    lines = ["### Ingestion (POST → `completed`, polled every 50 ms)", "",
             "| source | embedder | size | pages | chunks | seconds | chunks/s | server CPU s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    web = ing.get("website")
    if web:
        lines.append(f"| website, {web['pages_on_site'] - 1} help pages + index | wordllama | "
                     f"{web['page_bytes'] / 1e6:.2f} MB HTML | {web['pages_fetched']} | {web['chunks']} | "
                     f"{web['seconds']:.2f} | {_n(web['chunks_per_s'])} | {web['server_cpu_s']:.2f} |")
    slow = ing.get("website_slow")
    if slow:
        lines.append(f"| the same website, each page answered after {slow['site_delay_s'] * 1000:.0f} ms | wordllama | "
                     f"{slow['page_bytes'] / 1e6:.2f} MB HTML | {slow['pages_fetched']} | {slow['chunks']} | "
                     f"{slow['seconds']:.2f} | {_n(slow['chunks_per_s'])} | {slow['server_cpu_s']:.2f} |")
    for key, embedder in (("text_wordllama", "wordllama (offline)"), ("text_litellm_fake", "litellm → fake OpenAI")):
        row = ing.get(key)
        if row:
            lines.append(f"| text | {embedder} | {row['bytes'] / 1e6:.2f} MB | – | {row['chunks']:,} | "
                         f"{row['seconds']:.2f} | {_n(row['chunks_per_s'])} | {row['server_cpu_s']:.2f} |")
    for key, label in (("fill_small", "small agent"), ("fill_large", "large agent")):
        row = ing.get(key)
        if row and row["sources"]:
            lines.append(f"| {row['sources']} text{'s' if row['sources'] > 1 else ''} at once ({label}) | wordllama | {row['bytes'] / 1e6:.2f} MB | – | "
                         f"{row['chunks']:,} | {row['seconds']:.2f} | {_n(row['chunks_per_s'])} | {row['server_cpu_s']:.2f} |")
    if "first_job_s" in ing:
        lines += ["", f"Not in the rows: the first job after a start, which loads the embedder, took "
                      f"{ing['first_job_s']:.2f} s for one help page (wordllama)"
                      + (f", {ing['first_job_litellm_s']:.2f} s with litellm." if "first_job_litellm_s" in ing else ".")]
    if web:
        lines += ["", f"Website phases: first page GET {web['first_fetch_s']:.2f} s after the POST, last page GET at "
                      f"{web['last_fetch_s']:.2f} s, then {web['after_last_fetch_s']:.2f} s to `completed` "
                      "(extract, chunk, embed, write)."]
    breakdown = (web or {}).get("breakdown")
    if breakdown:
        lines += ["", f"The same {breakdown['pages']} pages in-process (no fetch, no Redis): extraction "
                      f"{breakdown['extract_s']:.2f} s, chunking {breakdown['chunk_s']:.2f} s, wordllama embedding "
                      f"{breakdown['embed_s']:.2f} s for {breakdown['chunks']} chunks."]
    breakdown = (ing.get("text_wordllama") or {}).get("breakdown")
    if breakdown:
        lines += ["", f"Same text in-process (no server): chunking {breakdown['chunk_s']:.2f} s, wordllama embedding "
                      f"{breakdown['embed_s']:.2f} s for {breakdown['chunks']:,} chunks "
                      f"(mean {breakdown['mean_chunk_bytes']:.0f} B)."]
    turns = results.get("turns")
    if turns:
        chunks = results.get("agent_chunks", {})
        lines += ["", "### Grounded turn (JSON, new conversation each, `local` model, sequential, alternating)", "",
                  "| agent | chunks | turns | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | "
                  "server CPU ms/turn | turns citing sources | first turn ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in turns.items():
            added = ("–", "–") if name == "none" else (_ms(row["added_p50_s"]), _ms(row["added_p99_s"]))
            lines.append(f"| {name} | {chunks.get(name, 0):,} | {row['turns']} | {_ms(row['p50_s'])} | {_ms(row['p90_s'])} | "
                         f"{_ms(row['p99_s'])} | {added[0]} | {added[1]} | {_ms(row['server_cpu_per_turn_s'])} | "
                         f"{row['turns_with_sources']:.0%} | {_ms(row['first_turn_s'], 0)} |")
        lines += ["", "Added = quantiles of the paired differences (same question, same round) against the agent "
                      "without knowledge. First turn = the first after training, which builds the agent's index."]
        busy = results.get("busy")
        if busy:
            lines += ["", "### Turns of an agent without knowledge while another agent's source is ingested", "",
                      "| meanwhile | turns | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
            for key, label in (("idle", "nothing (0.5 s)"), ("website", "the website (wordllama)"),
                               ("text", "a text (wordllama)"), ("text_litellm", "a text (litellm → fake)")):
                row = busy.get(key)
                if row is None:
                    continue
                if "text_bytes" in row:
                    label = label.replace("a text", f"a {row['text_bytes'] / 1e6:.1f} MB text")
                lines.append(f"| {label} | {row['turns']} | {_ms(row['p50_s'])} | {_ms(row['p99_s'])} | {_ms(row['max_s'])} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small texts, 1k agent only, 40 turns; prints, writes nothing")
    parser.add_argument("--no-litellm", action="store_true", help="skip the litellm embedder (saves its ~5 s start)")
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    targets.install_cleanup()
    run = Run(plan, with_litellm=not args.no_litellm)
    run.results.update(plan=plan, environment=environment())
    started = time.perf_counter()
    site = help_site.HelpSite()
    try:
        run.offline(site)
        if run.with_litellm:
            run.litellm()
    finally:
        site.close()
        targets.stop_all()
        run.cleanup()
    run.results["total_s"] = time.perf_counter() - started
    text = table(run.results)
    print(text)
    if not args.quick:
        env = run.results["environment"]
        header = (f"# Knowledge bench\n\n`make bench-knowledge` at {env['commit']}, {env['when']}; {env['cpus']} cores shared "
                  f"with other work (load average {env['load_average_at_start'][0]:.1f} at start); whole run "
                  f"{run.results['total_s']:.0f} s.\n\n")
        (RESULTS / "knowledge.md").write_text(header + text + "\n")
        (RESULTS / "knowledge.json").write_text(json.dumps(run.results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
