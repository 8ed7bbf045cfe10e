"""What the fault tests inject faults into: a private `redis-server` they can SIGKILL and restart, a
fake upstream that fails on purpose, and `chatspark serve` processes pointed at both.

Faults only ever reach processes started here, on 127.0.0.1: never the machine's shared Redis.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import httpx
import redis

from chatspark.apikeys import mint_key
from chatspark.config import load_config
from chatspark.store import Store
from chatspark.store.connection import connect
from tests.fake_openai import Behaviour, FakeOpenAI, drop_mid_stream, error, refused_base_url, reply, silent_stream, slow

REPO = Path(__file__).resolve().parents[2]
PREFIX = "csfaults"
MODEL_TIMEOUT = 1.5  # seconds: every model of the fault config, lowered from the shipped 60 s

# The agents of the fault config: id -> (model, what a client should see).
AGENT_LITELLM = 2  # gpt-4o-mini through litellm (the shipped agent)
AGENT_FALLBACK = 3  # gpt-4o through litellm, falling back to gpt-4o-mini (the shipped agent)
AGENT_DIRECT = 4  # the direct OpenAI-compatible backend (aiohttp)
AGENT_REFUSED_FIRST = 5  # a model on a refused port, falling back to the direct one
AGENT_REFUSED = 6  # only a refused port: always 502 UPSTREAM_ERROR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Redis -------------------------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` on a free loopback port with its own directory, fsyncing every write to its
    append-only file, so a SIGKILL loses nothing it acknowledged. Killable and restartable on the
    same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the fault tests need redis-server (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = tempfile.mkdtemp(prefix="chatspark-faults-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, timeout: float = 10) -> PrivateRedis:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.workdir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the private redis-server did not start: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.3, socket_timeout=0.3)
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or LOADING the append-only file
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what was fsynced survives."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def restart(self) -> None:
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def log_tail(self) -> str:
        try:
            return (Path(self.workdir) / "redis.log").read_text()[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the faulty upstream ------------------------------------------------------------------------

RESET = Behaviour(status=0)  # read the request, then cut the connection without an answer
CLEAN = "[clean]"  # a message containing this is never faulted (baselines, recovery probes)
LONG = "[long]"  # a message containing this gets LONG_REPLY
# 1000 chunks of 2 kB, ~165 a second (a fast model; a gap also lets the fake see the reader leave).
# Between a reader that stops reading and the fake lie ~1 MB of buffers (the service's socket and
# uvicorn's, aiohttp's, the kernel's on the upstream connection, the fake's): large chunks fill them
# in a few hundred chunks, and the whole answer is twice what they hold. Chunks, not bytes, are what
# costs CPU, so the fill is quick.
LONG_ANSWER = " ".join(f"w{i}-" + "x" * 2000 for i in range(1000))
LONG_REPLY = reply(LONG_ANSWER, gap=0.005)
# SO_SNDBUF (bytes; Linux doubles it) of the service's connections (server.socket_send_buffer) and of
# the fake's connections that stream LONG_REPLY. Left to autotuning, loopback grows each to ~4 MB
# and a reader that stops reading never stalls anything.
SEND_BUFFER = 16384


class FaultPlan:
    """Chooses each upstream request's behaviour at random from a weighted mix of faults, and counts
    what it injected. Stands in for FakeOpenAI's queue (which it reads when not empty)."""

    KINDS = ("429", "500", "slow", "reset", "drop")

    def __init__(self, seed: int = 7) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.weights: dict[str, float] = {}
        self.injected: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.queue: collections.deque[Behaviour] = collections.deque()

    def set_mix(self, **weights: float) -> None:
        """Probability of each fault per upstream request (`429=0.05, slow=0.02, …`); the rest answer."""
        unknown = set(weights) - set(self.KINDS)
        assert not unknown, unknown
        assert sum(weights.values()) < 1
        with self._lock:
            self.weights = dict(weights)

    def quiet(self) -> None:
        self.set_mix()

    def choose(self, body: dict[str, Any]) -> Behaviour:
        with self._lock:
            self.requests += 1
            if self.queue:
                return self.queue.popleft()
            last_user = next((m.get("content", "") for m in reversed(body.get("messages", []))
                              if m.get("role") == "user"), "")
            stream = bool(body.get("stream"))
            if LONG in last_user:
                return LONG_REPLY
            if CLEAN in last_user:
                return Behaviour()
            roll = self._random.random()
            for kind, weight in self.weights.items():
                if roll < weight:
                    self.injected[kind] += 1
                    return self._fault(kind, stream)
                roll -= weight
            return Behaviour()

    @staticmethod
    def _fault(kind: str, stream: bool) -> Behaviour:
        past_timeout = MODEL_TIMEOUT * 2.5
        if kind == "429":
            return error(429)
        if kind == "500":
            return error(500)
        if kind == "slow":  # streams: headers at once, then silence past the timeout
            return silent_stream(past_timeout) if stream else slow(past_timeout)
        if kind == "drop":  # a JSON answer cannot drop midway: cut it before the answer instead
            return drop_mid_stream(after_chunks=2) if stream else RESET
        return RESET


class FaultyUpstream(FakeOpenAI):
    """tests.fake_openai's server, each answer chosen by a FaultPlan, plus a connection reset; it
    counts the chunks it wrote to each LONG_REPLY stream still open."""

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()
        self.plan = plan
        self.requests_seen = 0
        self.long_streams: dict[int, int] = {}  # id of the writer -> chunks written so far

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any],
                       b: Behaviour, **options: Any) -> bytes:
        self.requests_seen += 1
        # Keep only a bounded tail of what was seen: a soak sends thousands of requests.
        if len(self.requests) > 200:
            del self.requests[:100]
            del self.headers[:100]
        behaviour = self.plan.choose(body)
        if behaviour is RESET:
            writer.transport.abort()
            raise ConnectionResetError("injected reset")
        if behaviour is not LONG_REPLY:
            return await super()._respond(reader, writer, body, behaviour, **options)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.long_streams[id(writer)] = 0
        try:
            return await super()._respond(reader, writer, body, behaviour, **options)
        finally:
            del self.long_streams[id(writer)]

    def _event(self, writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
        if id(writer) in self.long_streams:
            self.long_streams[id(writer)] += 1
        super()._event(writer, payload)

    # --- what UpstreamProcess calls over its pipe (from another thread than the server's) ---

    def set_mix(self, weights: dict[str, float]) -> None:
        self.plan.set_mix(**weights)

    def enqueue(self, behaviours: tuple[Behaviour, ...]) -> None:
        self.plan.queue.extend(behaviours)

    def clear_queue(self) -> None:
        self.plan.queue.clear()

    def stats(self) -> UpstreamStats:
        return UpstreamStats(
            requests_seen=self.requests_seen, injected=dict(self.plan.injected),
            closed_streams=len(self.closed_streams), long_streams=sorted(self.long_streams.values()),
        )


@dataclass(frozen=True)
class UpstreamStats:
    requests_seen: int
    injected: dict[str, int]  # faults injected so far, by kind
    closed_streams: int  # client disconnects seen while an answer was pending or streaming
    long_streams: list[int]  # chunks written so far to each LONG_REPLY stream still open


class UpstreamProcess:
    """A FaultyUpstream in a process of its own, driven over a socket pair, so that its work (~165
    chunks a second per long stream) does not take the load generator's GIL from the clients it
    measures."""

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.port = 0
        self._lock = threading.Lock()  # one call on the pipe at a time

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 30) -> UpstreamProcess:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tests.faults.harness import serve_upstream; "
             "serve_upstream(int(sys.argv[1]), int(sys.argv[2]))", str(theirs.fileno()), str(self.seed)],
            pass_fds=[theirs.fileno()], cwd=REPO,
        )
        theirs.close()
        self._pipe = Connection(ours.detach())
        if not self._pipe.poll(timeout):
            self.process.kill()
            raise RuntimeError("the fake upstream's process did not start")
        self.port = self._pipe.recv()
        return self

    def alive(self) -> bool:
        return self.process.poll() is None

    def _call(self, command: str, *args: Any) -> Any:
        with self._lock:
            self._pipe.send((command, args))
            if not self._pipe.poll(10):
                raise RuntimeError(f"the fake upstream's process did not answer {command}")
            result = self._pipe.recv()
        if isinstance(result, Exception):
            raise result
        return result

    def set_mix(self, **weights: float) -> None:
        """Probability of each fault per upstream request (`429=0.05, slow=0.02, …`); the rest answer."""
        self._call("set_mix", weights)

    def quiet(self) -> None:
        self._call("set_mix", {})

    def enqueue(self, *behaviours: Behaviour) -> None:
        """The next requests' behaviours, in order, before the plan's own choice."""
        self._call("enqueue", behaviours)

    def clear_queue(self) -> None:
        self._call("clear_queue")

    def stats(self) -> UpstreamStats:
        return self._call("stats")  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._pipe.close()  # the process stops when its end of the pipe closes
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def serve_upstream(fd: int, seed: int) -> None:
    """The fake upstream's process: serves, and answers UpstreamProcess's calls on the socket `fd`,
    until the test process closes its end."""
    pipe = Connection(fd)
    upstream = FaultyUpstream(FaultPlan(seed)).start()
    pipe.send(upstream.port)
    try:
        while True:
            command, args = pipe.recv()
            assert command in ("set_mix", "enqueue", "clear_queue", "stats"), command
            try:
                result = getattr(upstream, command)(*args)
            except Exception as exc:  # raised again in the test process
                result = exc
            pipe.send(result)
    except EOFError:
        pass
    finally:
        upstream.stop()


# --- the service ---------------------------------------------------------------------------------


def write_config(path: Path, upstream_url: str) -> Path:
    """The shipped config.toml with every model's timeout lowered and a small socket send buffer,
    plus models and agents for the faults no shipped model reaches: the direct backend, and a refused
    port with and without a fallback."""
    text = (REPO / "config.toml").read_text()
    text, found = re.subn(r"(?m)^\[server\]\n", f"[server]\nsocket_send_buffer = {SEND_BUFFER}\n", text)
    assert found == 1, "config.toml has no [server] table"
    text, lowered = re.subn(r"(?m)^timeout_seconds\s*=\s*[\d.]+", f"timeout_seconds = {MODEL_TIMEOUT}", text)
    assert lowered >= 3, "config.toml no longer sets timeout_seconds per model"
    refused = refused_base_url()
    text += f"""
# --- added by tests/faults ---
[models.direct]
backend = "openai"
provider_model = "gpt-4o-mini"
api_base = "{upstream_url}"
context_window = 128000
max_output_tokens = 4096
timeout_seconds = {MODEL_TIMEOUT}
retries = 1

[models.refused-first]
backend = "openai"
provider_model = "gpt-4o"
api_base = "{refused}"
context_window = 128000
max_output_tokens = 4096
timeout_seconds = {MODEL_TIMEOUT}
retries = 1
fallbacks = ["direct"]

[models.refused]
backend = "litellm"
provider_model = "openai/gpt-4o-mini"
api_base = "{refused}"
context_window = 128000
max_output_tokens = 4096
timeout_seconds = {MODEL_TIMEOUT}
retries = 1

[[agents]]
id = {AGENT_DIRECT}
name = "Direct"
model = "direct"
botPersonality = "You answer briefly."

[[agents]]
id = {AGENT_REFUSED_FIRST}
name = "Refused first"
model = "refused-first"
botPersonality = "You answer briefly."

[[agents]]
id = {AGENT_REFUSED}
name = "Refused"
model = "refused"
botPersonality = "You answer briefly."
"""
    path.write_text(text)
    load_config(path, environ={})  # fail here, not in the spawned server, if it does not parse
    return path


class ServiceProcess:
    """`python -m chatspark.cli serve` on the fault config, configured by environment like
    tests/conftest.py's SpawnedServer, with its pid's memory and descriptors readable."""

    def __init__(self, config_path: Path, redis_url: str, upstream_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.config_path = config_path
        self.redis_url = redis_url
        self.env = {
            "CHATSPARK_CONFIG": str(config_path),
            "REDIS_URL": redis_url,
            "CHATSPARK_REDIS_PREFIX": PREFIX,
            "OPENAI_BASE_URL": upstream_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "CHATSPARK_PING_SECONDS": "1",
            "CHATSPARK_DRAIN_SECONDS": "1",
            "CHATSPARK_LEASE_SECONDS": "3",
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatspark.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the server exited: {self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the spawned server did not become ready: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def mint_key(self, mode: Literal["live", "test"] = "live") -> str:
        """A key (live unless said) with every scope, a rate limit no test meets and no monthly cap,
        written the way tests/conftest.py's RunningServer.put_key writes it."""
        config = load_config(self.config_path, environ=self.env)
        plain, record = mint_key(mode, rate_limit=1_000_000, monthly_cap=0, name="faults")

        async def put() -> None:
            store = Store(connect(config.store), config.store)
            try:
                await store.keys.put(record)
            finally:
                await store.aclose()

        asyncio.run(put())
        return plain

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


@dataclass
class Rig:
    """One private Redis, one faulty upstream, one service on them, and a key."""

    redis: PrivateRedis
    upstream: UpstreamProcess
    service: ServiceProcess
    key: str
    workdir: Path

    def check_alive(self) -> None:
        assert self.service.alive(), f"the service died: {self.service.log_tail()}"
        assert self.upstream.alive(), "the fake upstream's process died"
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.restart()
        self.upstream.quiet()
        self.upstream.clear_queue()
