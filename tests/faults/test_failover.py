"""Redis failover through Sentinel, with and without `[store] wait_replicas`.

A master, two replicas and a Sentinel, all `redis-server` processes on loopback started here. The
replicas are made to lag (SIGSTOP, and the master drops their links) while chat turns are
acknowledged; the master is SIGKILLed; the replicas resume and Sentinel promotes one. Without
`wait_replicas` the turns acknowledged while they lagged are gone after the failover (replication
is asynchronous); with `wait_replicas = 1` none is lost — those turns answered 503 instead of being
acknowledged, and once the other replica follows the new master, turns are acknowledged again.

The quick check (Sentinel URL, a turn with wait_replicas against a healthy replica, a lagging one
answered 503) runs in `make test`; the failovers under `make faults`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import RunningServer, make_config
from tests.faults import report
from tests.faults.harness import free_port

MASTER = "chatspark"


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def stop_signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)


class SentinelSetup:
    """A master, two replicas and one Sentinel (quorum 1, quick to act)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is needed for the Sentinel tests")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="chatspark-sentinel-"))
        self.master = self._server(free_port())
        self.replicas = [self._server(free_port(), "--replicaof", "127.0.0.1", str(self.master.port)) for _ in range(2)]
        self.replica = self.replicas[0]
        self.sentinel_port = free_port()
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 2000\nsentinel failover-timeout {MASTER} 5000\n"
        )
        self.sentinel = Node(self.sentinel_port, subprocess.Popen(
            [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for replica in self.replicas:
            self._until(lambda r=replica: r.client().info("replication").get("master_link_status") == "up")
        self._until(lambda: len(redis.Redis(port=self.sentinel_port).sentinel_slaves(MASTER)) == 2)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER}/0"

    def _server(self, port: int, *more: str) -> Node:
        process = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb", *more],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node = Node(port, process)
        self._until(lambda: node.client().ping())
        return node

    @staticmethod
    def _until(check: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the Sentinel setup did not get ready")
            time.sleep(0.05)

    def lag(self) -> None:
        """The replicas stop reading (SIGSTOP) and the master drops their links: what it takes from
        now on, only it has."""
        for replica in self.replicas:
            replica.stop_signal(signal.SIGSTOP)
        self.master.client().client_kill_filter(_type="replica")

    def fail_over(self) -> float:
        """SIGKILL the master, resume the replicas; seconds until Sentinel names one of them master."""
        self.master.process.kill()
        self.master.process.wait(10)
        for replica in self.replicas:
            replica.stop_signal(signal.SIGCONT)
        started = time.monotonic()
        sentinel = redis.Redis(port=self.sentinel_port)
        ports = {r.port: r for r in self.replicas}
        self._until(lambda: int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1]) in ports, 30)
        promoted = ports[int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1])]
        self._until(lambda: promoted.client().info("replication")["role"] == "master", 30)
        return time.monotonic() - started

    def stop(self) -> None:
        for node in (self.sentinel, *self.replicas, self.master):
            if node.process.poll() is None:
                node.stop_signal(signal.SIGCONT)
                node.process.kill()
                node.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    setup = SentinelSetup()
    try:
        yield setup
    finally:
        setup.stop()


def start(sentinel: SentinelSetup, key_prefix: str, wait_replicas: int) -> RunningServer:
    store = {"wait_replicas": wait_replicas, "wait_timeout_seconds": 0.2, "write_attempts": 1}
    return RunningServer(make_config(sentinel.url, f"{key_prefix}-failover", store=store,
                                     knowledge={"seed": []})).start()


def turn(http: httpx.Client, agent: int, n: int) -> httpx.Response:
    return http.post(f"/api/v1/agents/{agent}/chat", json={"message": f"turn {n}"})


def test_through_sentinel_a_turn_waits_for_its_replica_and_a_lagging_one_means_503(sentinel, key_prefix):  # type: ignore[no-untyped-def]
    server = start(sentinel, key_prefix, wait_replicas=1)
    try:
        with server.client(server.key()) as http:
            agent = http.post("/api/v1/agents", json={"name": "durable", "model": "local"}).json()["agent"]["id"]
            answered = turn(http, agent, 1)
            assert answered.status_code == 200, answered.text
            cid = answered.json()["conversationId"]
            assert sentinel.replica.client().exists(f"{server.config.store.prefix}:conv:{{{cid}}}")  # already there
            sentinel.lag()
            try:
                refused = turn(http, agent, 2)
            finally:
                for replica in sentinel.replicas:
                    replica.stop_signal(signal.SIGCONT)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE" and refused.json()["error"]["retryable"]
    finally:
        server.stop()


@pytest.mark.faults
@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
def test_a_failover_loses_acknowledged_turns_only_without_wait_replicas(sentinel, key_prefix, wait_replicas):  # type: ignore[no-untyped-def]
    server = start(sentinel, key_prefix, wait_replicas)
    acknowledged: list[tuple[str, str]] = []  # (conversation, message id)
    refused = 0
    try:
        with server.client(server.key()) as http:
            agent = http.post("/api/v1/agents", json={"name": "failover", "model": "local"}).json()["agent"]["id"]
            for n in range(20):  # replicated while the replica keeps up
                answer = turn(http, agent, n)
                assert answer.status_code == 200, answer.text
                acknowledged.append((answer.json()["conversationId"], answer.json()["messageId"]))
            time.sleep(0.3)
            sentinel.lag()
            for n in range(20, 60):  # the replica lags: only the master has these
                answer = turn(http, agent, n)
                if answer.status_code == 200:
                    acknowledged.append((answer.json()["conversationId"], answer.json()["messageId"]))
                else:
                    assert answer.status_code == 503, answer.text
                    refused += 1
            failover_seconds = sentinel.fail_over()
            failed_over = time.monotonic()
            sent = 60
            while turn(http, agent, 99).status_code != 200:  # the service finds the new master
                sent += 1
                assert time.monotonic() < failed_over + 30, "no turn succeeded after the failover"
                time.sleep(0.2)
            recovered_seconds = time.monotonic() - failed_over
            lost = 0
            for cid, message_id in acknowledged:
                shown = http.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages")
                if shown.status_code != 200 or message_id not in {m["id"] for m in shown.json()["messages"]}:
                    lost += 1
        report.record(
            f"Redis failover through Sentinel, wait_replicas = {wait_replicas}"
            + ("" if wait_replicas else " (losses expected: the control)"),
            faults={"replicas lagging": 2, "master SIGKILL": 1}, requests=sent + 1, acknowledged=len(acknowledged),
            lost=lost, errors_5xx={"503 SERVICE_UNAVAILABLE": refused} if refused else {}, rss_drift_kb=None,
            fd_drift=None, notes=(f"failover {failover_seconds:.1f} s, first turn after it {recovered_seconds:.1f} s; "
                                  f"{refused} turns answered 503 while the replica lagged; {lost} acknowledged turns lost"),
        )
        if wait_replicas:
            assert lost == 0 and refused == 40
        else:
            assert lost > 0 and refused == 0, "nothing was lost without wait_replicas: the test tests nothing"
    finally:
        server.stop()
