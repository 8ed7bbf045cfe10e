"""Shared fixtures: a real Redis, a private key prefix, the fake provider, and servers of the app.

Redis: `$REDIS_URL`, else 127.0.0.1:6379, else a private `redis-server` started here. Every key
the suite writes starts with its own random prefix; cleanup deletes only those keys.

Servers: `server` (with `client` and `key`) is the app in this process, shared by the session and
reached without a socket; `start_server(...)` starts one on a config of the test's own. Their
`live_` twins are a real uvicorn on 127.0.0.1, for what only a socket shows: a stream read as it
arrives, a client hanging up, the HTTP parser. `spawn_server` is `chatspark serve` in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import redis
import uvicorn

from chatspark.apikeys import mint_key
from chatspark.config import DEFAULT_PATH as DEFAULT_CONFIG
from chatspark.config import Config, load_config
from chatspark.store import Store
from chatspark.store.connection import connect
from chatspark.store.keys import ApiKeyRecord
from chatspark.web import create_app
from tests.app_loop import close_connections, new_loop
from tests.fake_openai import fake_openai, shared_fake_openai  # noqa: F401  (re-exported fixtures)
from tests.in_process import BASE_URL as IN_PROCESS_URL
from tests.in_process import InProcessApp

TEST_KEY_ENV = "CHATSPARK_TEST_PROVIDER_KEY"
T = TypeVar("T", bound="AppServer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if _reachable("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("no Redis reachable and no redis-server binary to start one (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="chatspark-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _reachable(url):
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the private redis-server did not start")
        time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"cstest-{secrets.token_hex(4)}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        # Agent keys start with the hash tag `{<prefix>:agents}`; other tests add suffixes to it.
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def unreachable_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make_config(
    redis_url: str,
    prefix: str,
    provider_url: str | None = None,
    provider_models: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
    knowledge: dict[str, Any] | None = None,
    webhooks: dict[str, Any] | None = None,
    **server: Any,
) -> Config:
    """The shipped config.toml, pointed at the test Redis, prefix and (optionally) the fake provider.

    Provider models get no retries unless `provider_models` (ModelSettings fields) says otherwise.
    """
    config = load_config(environ={})
    changes = {"retries": 0, **(provider_models or {})}
    models = {
        name: msgspec.structs.replace(model, api_base=provider_url, api_key_env=TEST_KEY_ENV, **changes)
        if model.backend == "litellm"
        else model
        for name, model in config.models.items()
    }
    return msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(config.store, url=redis_url, prefix=prefix, **(store or {})),
        server=msgspec.structs.replace(config.server, **server),
        knowledge=msgspec.structs.replace(config.knowledge, **(knowledge or {})),
        webhooks=msgspec.structs.replace(config.webhooks, **(webhooks or {})),
        models=models,
    )


class AppServer:
    """The app on a config, and keys stored for calling it. Subclasses say how a client reaches it."""

    config: Config

    def put_key(self, record: ApiKeyRecord) -> None:
        async def put() -> None:
            store = Store(connect(self.config.store), self.config.store)
            try:
                await store.keys.put(record)
            finally:
                await store.aclose()

        asyncio.run(put())

    def key(self, mode: str = "live", **options: Any) -> str:
        """A stored key; unless a test asks for limits, high enough that no test meets them."""
        options.setdefault("rate_limit", 1_000_000)
        options.setdefault("monthly_cap", 0)
        plain, record = mint_key(mode, **options)
        self.put_key(record)
        return plain

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        raise NotImplementedError

    def start(self) -> AppServer:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class InProcessServer(AppServer):
    """The app in this process, no socket (tests/in_process.py): a client gets each answer whole."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._app = InProcessApp(create_app(config))

    def start(self) -> InProcessServer:
        self._app.start()
        return self

    def stop(self) -> None:
        self._app.stop()

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=IN_PROCESS_URL, transport=self._app.transport(), headers=headers,
                            timeout=options.pop("timeout", 30), **options)


class RunningServer(AppServer):
    """A real uvicorn serving the app on 127.0.0.1 in a thread: for what only a socket shows."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self._thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            try:
                await self._server.serve()
            finally:
                await close_connections()

        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(serve())

    def start(self) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=options.pop("timeout", 30), **options)


def _starter(kind: type[T], redis_url: str, key_prefix: str) -> tuple[Callable[..., T], list[T]]:
    started: list[T] = []

    def start(
        provider_url: str | None = None,
        store_url: str | None = None,
        provider_models: dict[str, Any] | None = None,
        prefix: str | None = None,
        store: dict[str, Any] | None = None,
        knowledge: dict[str, Any] | None = None,
        webhooks: dict[str, Any] | None = None,
        **server: Any,
    ) -> T:
        config = make_config(
            store_url or redis_url, prefix or key_prefix, provider_url, provider_models, store, knowledge, webhooks,
            **server,
        )
        running = kind(config)
        running.start()
        started.append(running)
        return running

    return start, started


@pytest.fixture
def start_server(redis_url: str, key_prefix: str) -> Iterator[Callable[..., InProcessServer]]:
    """Starts the app in process on a config of the test's own; stopped when the test ends."""
    start, started = _starter(InProcessServer, redis_url, key_prefix)
    yield start
    for running in started:
        running.stop()


@pytest.fixture
def start_live_server(redis_url: str, key_prefix: str) -> Iterator[Callable[..., RunningServer]]:
    """`start_server` on a real socket: for streams read as they arrive, disconnects, the HTTP parser."""
    start, started = _starter(RunningServer, redis_url, key_prefix)
    yield start
    for running in started:
        running.stop()


class SpawnedServer:
    """`chatspark serve` in its own process, on the shipped config.toml, configured by environment.

    Its provider models use the direct OpenAI-compatible backend (backends/openai.py) instead of
    litellm: these processes stand for other replicas on the same Redis, and importing litellm would
    make each start in ~8 s instead of ~1 s. A served process on litellm: tests/test_security.py.
    """

    def __init__(self, env: dict[str, str], log_path: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatspark.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() takes `serve --workers N`'s workers too
        )

    def wait_ready(self, timeout: float = 60) -> SpawnedServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {open(self.log_path).read()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the spawned server did not become ready")

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=options.pop("timeout", 30), **options)

    def stop(self) -> None:
        # The whole group: killing only the supervisor of `serve --workers N` left its workers
        # running, orphaned, after the suite.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def spawn_server(redis_url: str, key_prefix: str, tmp_path: Any) -> Iterator[Callable[..., SpawnedServer]]:
    spawned: list[SpawnedServer] = []

    shipped = DEFAULT_CONFIG.read_text()
    direct = shipped.replace('backend = "litellm"', 'backend = "openai"')
    assert direct != shipped, "config.toml has no litellm model left to switch"
    config = tmp_path / "spawned-config.toml"
    config.write_text(direct)

    def spawn(provider_url: str, **env: str) -> SpawnedServer:
        settings = {
            "CHATSPARK_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "CHATSPARK_REDIS_PREFIX": key_prefix,
            "OPENAI_BASE_URL": provider_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            **env,
        }
        server = SpawnedServer(settings, str(tmp_path / f"server-{len(spawned)}.log"))
        spawned.append(server)
        return server.wait_ready()

    yield spawn
    for server in spawned:
        server.stop()


@pytest.fixture
def provider_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TEST_KEY_ENV, "sk-test-not-a-real-key")
    return "sk-test-not-a-real-key"


# The app on the shipped config, its litellm models on the fake provider, shared by the session:
# tests do not depend on a fresh one (each mints its own keys; the fake is reset for each test).


@pytest.fixture(scope="session")
def shared_server(redis_url: str, key_prefix: str, shared_fake_openai: Any) -> Iterator[InProcessServer]:
    running = InProcessServer(make_config(redis_url, key_prefix, shared_fake_openai.base_url)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def shared_live_server(redis_url: str, key_prefix: str, shared_fake_openai: Any) -> Iterator[RunningServer]:
    running = RunningServer(make_config(redis_url, key_prefix, shared_fake_openai.base_url)).start()
    yield running
    running.stop()


@pytest.fixture
def server(shared_server: InProcessServer, fake_openai: Any, provider_key: str) -> InProcessServer:
    """The app on the shipped config, in process, its litellm models pointed at the fake provider."""
    return shared_server


@pytest.fixture
def live_server(shared_live_server: RunningServer, fake_openai: Any, provider_key: str) -> RunningServer:
    """`server` on a real uvicorn socket (same Redis prefix, same fake provider)."""
    return shared_live_server


@pytest.fixture
def key(server: InProcessServer) -> str:
    return server.key()


@pytest.fixture
def client(server: InProcessServer, key: str) -> Iterator[httpx.Client]:
    with server.client(key) as http:
        yield http


@pytest.fixture
def live_client(live_server: RunningServer) -> Iterator[httpx.Client]:
    with live_server.client(live_server.key()) as http:
        yield http


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
