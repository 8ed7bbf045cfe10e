"""The deployment of deploy/ as processes: a real nginx running the exact `deploy/nginx.conf`
(its placeholders rendered: ports and a run directory) in front of 3 `chatspark serve` replicas on
the suite's Redis, their models on the fake OpenAI server of the session.

nginx is Debian's package (tests/setup.sh installs it when it can); without it these tests skip
saying why, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatspark.config import DEFAULT_PATH as SHIPPED_CONFIG
from chatspark.config import load_config
from tests.conftest import AppServer, free_port, make_config

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "deploy" / "nginx.conf"
COMPOSE = REPO / "deploy" / "compose.yaml"
PLACEHOLDERS = ("${CHATSPARK_LISTEN}", "${CHATSPARK_UPSTREAMS}", "${NGINX_RUN_DIR}")
REPLICAS = 3
# Short intervals for the timing-dependent parts, each with >= 3x slack in the tests.
PING_SECONDS = 0.2
LEASE_SECONDS = 2.0
DRAIN_SECONDS = 10.0
ADDRESS_RATE = 6  # widget requests per client address per minute


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found is None:
        reason = "no nginx (tests/gateway run deploy/nginx.conf): `sudo apt-get install nginx`, or `make test` as root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def server_parameters() -> str:
    """The parameters deploy/compose.yaml gives each replica's `server` line (max_fails, …): the
    tests give their replicas the same."""
    compose = COMPOSE.read_text()
    found = re.findall(r"server chatspark-\d+:\d+([^;]*);", compose)
    assert found and len(set(found)) == 1, "deploy/compose.yaml: CHATSPARK_UPSTREAMS lists no replicas alike"
    return found[0]


def render(text: str, listen: str, upstreams: list[str], run_dir: Path) -> str:
    """deploy/nginx.conf with its placeholders substituted, as envsubst does in the compose file."""
    for placeholder in PLACEHOLDERS:
        assert placeholder in text, f"deploy/nginx.conf lost its {placeholder} placeholder"
    servers = " ".join(f"server {address}{server_parameters()};" for address in upstreams)
    rendered = (text.replace("${CHATSPARK_LISTEN}", listen).replace("${CHATSPARK_UPSTREAMS}", servers)
                .replace("${NGINX_RUN_DIR}", str(run_dir)))
    assert not re.search(r"\$\{[A-Z_]+\}", rendered), "deploy/nginx.conf has a placeholder the tests do not render"
    return rendered


class Replica:
    """`chatspark serve` on a fixed port (restarted on the same one, as a container would be), with
    a model key of its own so the fake provider's request headers tell which replica called it."""

    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        self.index = index
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.base_url = f"http://{self.address}"
        self.model_key = f"sk-test-replica-{index}"
        self.env = {**env, "OPENAI_API_KEY": self.model_key}
        self.log_path = workdir / f"replica-{index}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatspark.cli", "serve", "--port", str(self.port)],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> Replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"replica {self.index} exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"replica {self.index} did not become ready: {self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None and self.alive()
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(timeout=30)


class Nginx:
    def __init__(self, binary: str, replicas: list[Replica], workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.run_dir = workdir / "nginx"
        self.run_dir.mkdir()
        self.conf = self.run_dir / "nginx.conf"
        self.conf.write_text(render(NGINX_CONF.read_text(), f"127.0.0.1:{self.port}",
                                    [r.address for r in replicas], self.run_dir))
        self.access_log = workdir / "nginx.access.log"
        self.error_log = workdir / "nginx.error.log"
        command = [binary, "-p", str(self.run_dir), "-c", str(self.conf), "-e", "stderr"]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
        assert checked.returncode == 0, f"nginx -t refused deploy/nginx.conf: {checked.stderr}"
        with open(self.access_log, "wb") as out, open(self.error_log, "wb") as err:
            self.process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=out, stderr=err)
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{self.base_url}/api/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.error_log.read_text()}") from None
                time.sleep(0.05)

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=options.pop("timeout", 30), **options)

    def upstreams(self, request_id: str, timeout: float = 5) -> list[str]:
        """The replica addresses nginx tried for the request whose answer had this x-request-id
        (its access line is written when the request ends)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.access_log.read_text(errors="replace").splitlines():
                if f"request_id={request_id}" in line:
                    found = re.search(r"upstream=(\S.*?) upstream_status=", line)
                    assert found, line
                    # `a, b`: retried in the upstream group; `a : b`: again after an internal redirect.
                    return [a for a in re.split(r"\s*,\s*|\s+:\s+", found.group(1).strip()) if a]
            if time.monotonic() > deadline:
                raise AssertionError(f"no access line for request {request_id}")
            time.sleep(0.05)

    def log_size(self) -> int:
        return self.access_log.stat().st_size

    def wait_answered_by(self, address: str, after: int, timeout: float = 10) -> None:
        """Until an access line past byte `after` of the log shows `address` answering 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.access_log.read_bytes()[after:].decode(errors="replace")
            if re.search(rf"upstream=[^=]*{re.escape(address)} upstream_status=[^=]*200 ", text):
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx sent nothing to {address} within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finishes open requests
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class _Keys(AppServer):
    def __init__(self, config: Any) -> None:
        self.config = config


class Gateway:
    def __init__(self, nginx: Nginx, replicas: list[Replica], keys: _Keys) -> None:
        self.nginx = nginx
        self.replicas = replicas
        self._keys = keys

    def key(self, **options: Any) -> str:
        return self._keys.key(**options)

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        return self.nginx.client(key, **options)

    def replica_at(self, address: str) -> Replica:
        return next(r for r in self.replicas if r.address == address)

    def replica_with_model_key(self, authorization: str) -> Replica:
        return next(r for r in self.replicas if authorization == f"Bearer {r.model_key}")

    def warm(self) -> None:
        """One chat turn on each replica directly: its model backend is imported before any timing."""
        key = self.key()
        for replica in self.replicas:
            answer = httpx.post(f"{replica.base_url}/api/v1/agents/2/chat", json={"message": "warm up"},
                                headers={"authorization": f"Bearer {key}"}, timeout=30)
            assert answer.status_code == 200, answer.text

    def heal(self) -> None:
        """Every replica up again (a test that killed one restarts it)."""
        down = [r for r in self.replicas if not r.alive()]
        for replica in down:
            replica.start()
        for replica in down:
            replica.wait_ready()
        if down:
            self.warm()


def replica_config(workdir: Path) -> Path:
    """The shipped config.toml, its litellm models on the direct backend (a replica starts in ~1 s
    instead of ~8), trusting nginx on 127.0.0.1 for the client address, a small per-address limit."""
    text = SHIPPED_CONFIG.read_text().replace('backend = "litellm"', 'backend = "openai"')
    text, found = re.subn(r"(?m)^\[server\]\n", '[server]\ntrusted_proxies = ["127.0.0.1"]\n', text)
    assert found == 1, "config.toml has no [server] table"
    text, found = re.subn(r"(?m)^address_rate_per_minute\s*=.*$", f"address_rate_per_minute = {ADDRESS_RATE}", text)
    assert found == 1, "config.toml no longer sets address_rate_per_minute"
    path = workdir / "replica-config.toml"
    path.write_text(text)
    load_config(path, environ={})
    return path


@pytest.fixture(scope="module")
def gateway(redis_url: str, key_prefix: str, shared_fake_openai: Any) -> Iterator[Gateway]:
    binary = nginx_binary()
    workdir = Path(tempfile.mkdtemp(prefix="chatspark-gateway-"))
    env = {
        "CHATSPARK_CONFIG": str(replica_config(workdir)),
        "REDIS_URL": redis_url,
        "CHATSPARK_REDIS_PREFIX": key_prefix,
        "OPENAI_BASE_URL": shared_fake_openai.base_url,
        "CHATSPARK_PING_SECONDS": str(PING_SECONDS),
        "CHATSPARK_LEASE_SECONDS": str(LEASE_SECONDS),
        "CHATSPARK_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    replicas = [Replica(i, env, workdir) for i in range(REPLICAS)]
    nginx = None
    try:
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.start().wait_ready(), replicas))
        nginx = Nginx(binary, replicas, workdir)
        gateway = Gateway(nginx, replicas, _Keys(make_config(redis_url, key_prefix)))
        gateway.warm()
        yield gateway
    finally:
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.stop()
        kept = REPO / "tests" / "gateway" / "results"  # for a post-mortem; not versioned
        kept.mkdir(exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, kept / log.name)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def gw(gateway: Gateway, fake_openai: Any, provider_key: str) -> Gateway:
    """The gateway with every replica up and the fake provider reset (after any warm-up)."""
    gateway.heal()
    fake_openai.reset()
    return gateway
