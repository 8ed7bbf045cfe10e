"""`wait_replicas` on a Redis Cluster: 3 masters, each with a replica (6 `redis-server` processes on
loopback, started here). Every write reaches its node's replica before it is acknowledged; with the
replicas stopped, turns answer 503; and under `make faults` a master SIGKILLed after its replica
lagged loses the turns it alone held without `wait_replicas`, none with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.conftest import RunningServer, make_config
from tests.faults import report
from tests.test_cluster import _cluster_ports, _wait


@dataclass
class ClusterWithReplicas:
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def roles(self) -> tuple[dict[int, int], list[int]]:
        """(master port -> its replica's port, master ports), as the cluster says now."""
        masters: list[int] = []
        replica_of: dict[int, int] = {}
        nodes = redis.Redis(port=self.live_port()).execute_command("CLUSTER", "NODES").decode().splitlines()
        by_id: dict[str, int] = {}
        for line in nodes:
            node_id, address, flags, master_id = line.split()[:4]
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            by_id[node_id] = port
            if "master" in flags and "fail" not in flags:
                masters.append(port)
        for line in nodes:
            node_id, address, flags, master_id = line.split()[:4]
            if "slave" in flags and master_id in by_id:
                replica_of[by_id[master_id]] = by_id[node_id]
        return replica_of, masters

    def live_port(self) -> int:
        return next(p for p, process in self.processes.items() if process.poll() is None)

    def signal(self, port: int, sig: int) -> None:
        os.kill(self.processes[port].pid, sig)

    def stop(self) -> None:
        for port, process in self.processes.items():
            if process.poll() is None:
                self.signal(port, signal.SIGCONT)
                process.kill()
                process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def cluster6() -> Iterator[ClusterWithReplicas]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed to start a private cluster")
    workdir = tempfile.mkdtemp(prefix="chatspark-cluster6-")
    ports = _cluster_ports(6)
    processes = {
        p: subprocess.Popen(
            [server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file",
             f"nodes-{p}.conf", "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
             "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for p in ports
    }
    setup = ClusterWithReplicas(ports, processes, workdir)
    try:
        for p in ports:
            _wait(lambda p=p: redis.Redis(port=p).ping())
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=30)
        _wait(lambda: redis.Redis(port=ports[0]).cluster("info")["cluster_state"] == "ok", 30)
        _wait(lambda: len(setup.roles()[0]) == 3 and all(
            redis.Redis(port=r).info("replication").get("master_link_status") == "up" for r in setup.roles()[0].values()
        ), 30)
        yield setup
    finally:
        setup.stop()


def start(cluster: ClusterWithReplicas, key_prefix: str, wait_replicas: int, wait_timeout: float = 0.2) -> RunningServer:
    store = {"cluster": True, "wait_replicas": wait_replicas, "wait_timeout_seconds": wait_timeout, "write_attempts": 1}
    return RunningServer(make_config(cluster.url, f"{key_prefix}-c6", store=store, knowledge={"seed": []})).start()


def turn(http: httpx.Client, agent: int, n: int, cid: str | None = None) -> httpx.Response:
    return http.post(f"/api/v1/agents/{agent}/chat", json={"message": f"turn {n}", **({"conversationId": cid} if cid else {})})


def test_on_a_cluster_every_write_waits_for_its_replica_and_lagging_replicas_mean_503(cluster6, key_prefix):  # type: ignore[no-untyped-def]
    server = start(cluster6, key_prefix, wait_replicas=1, wait_timeout=1.0)  # a busy machine's replicas
    try:
        with server.client(server.key()) as http:
            agent = http.post("/api/v1/agents", json={"name": "durable", "model": "local"}).json()["agent"]["id"]
            answers = [turn(http, agent, n) for n in range(6)]  # conversations spread over the masters
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            cid = answers[0].json()["conversationId"]
            assert turn(http, agent, 7, cid).status_code == 200
            meta = f"{server.config.store.prefix}:conv:{{{cid}}}"
            replicas = cluster6.roles()[0]
            slot = redis.Redis(port=cluster6.ports[0]).cluster("keyslot", meta)
            owner = next(p for p in replicas if slot in _slots(p))
            assert redis.Redis(port=replicas[owner]).execute_command("READONLY") and _exists_on(replicas[owner], meta)
            for replica in replicas.values():
                cluster6.signal(replica, signal.SIGSTOP)
            try:
                refused = turn(http, agent, 8, cid)
            finally:
                for replica in replicas.values():
                    cluster6.signal(replica, signal.SIGCONT)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE" and refused.json()["error"]["retryable"]
    finally:
        server.stop()


def _slots(port: int) -> set[int]:
    found: set[int] = set()
    for start, end, master, *_ in redis.Redis(port=port).execute_command("CLUSTER", "SLOTS"):
        if int(master[1]) == port:
            found.update(range(int(start), int(end) + 1))
    return found


def _exists_on(port: int, key: str) -> bool:
    connection = redis.Redis(port=port)
    connection.execute_command("READONLY")
    return bool(connection.exists(key))


@pytest.mark.faults
@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
def test_a_cluster_failover_loses_acknowledged_turns_only_without_wait_replicas(cluster6, key_prefix, wait_replicas):  # type: ignore[no-untyped-def]
    server = start(cluster6, key_prefix, wait_replicas)
    acknowledged: list[tuple[str, str]] = []
    refused = 0
    try:
        with server.client(server.key()) as http:
            agent = http.post("/api/v1/agents", json={"name": "failover", "model": "local"}).json()["agent"]["id"]
            replicas, masters = cluster6.roles()
            victim = masters[0]
            cids = []
            for n in range(30):  # conversations on every master, replicated while the replicas keep up
                answer = turn(http, agent, n)
                assert answer.status_code == 200, answer.text
                cids.append(answer.json()["conversationId"])
            prefix = server.config.store.prefix
            node = redis.Redis(port=cluster6.ports[0])
            on_victim = [c for c in cids if node.cluster("keyslot", f"{prefix}:conv:{{{c}}}") in _slots(victim)]
            assert on_victim, "no conversation on the master to be killed"
            time.sleep(0.3)
            cluster6.signal(replicas[victim], signal.SIGSTOP)
            redis.Redis(port=victim).client_kill_filter(_type="replica")
            for n, cid in enumerate(on_victim * 3):  # only the master has these
                answer = turn(http, agent, 100 + n, cid)
                if answer.status_code == 200:
                    acknowledged.append((cid, answer.json()["messageId"]))
                else:
                    assert answer.status_code == 503, answer.text
                    refused += 1
            cluster6.processes[victim].kill()
            cluster6.processes[victim].wait(10)
            cluster6.signal(replicas[victim], signal.SIGCONT)
            started = time.monotonic()
            _wait(lambda: replicas[victim] in cluster6.roles()[1], 30)  # its replica is a master now
            failover = time.monotonic() - started
            lost = 0
            deadline = time.monotonic() + 30
            for cid, message_id in acknowledged:
                while True:
                    shown = http.get(f"/api/v1/agents/{agent}/conversations/{cid}/messages")
                    if shown.status_code in (200, 404) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                if shown.status_code != 200 or message_id not in {m["id"] for m in shown.json()["messages"]}:
                    lost += 1
        report.record(
            f"Redis Cluster failover (3 masters + 3 replicas), wait_replicas = {wait_replicas}"
            + ("" if wait_replicas else " (losses expected: the control)"),
            faults={"replica lagging": 1, "master SIGKILL": 1}, requests=30 + len(on_victim) * 3,
            acknowledged=30 + len(acknowledged), lost=lost,
            errors_5xx={"503 SERVICE_UNAVAILABLE": refused} if refused else {}, rss_drift_kb=None, fd_drift=None,
            notes=f"failover {failover:.1f} s; {refused} turns answered 503 while the replica lagged; {lost} lost",
        )
        if wait_replicas:
            assert lost == 0 and refused == len(on_victim) * 3
        else:
            assert lost > 0 and refused == 0, "nothing was lost without wait_replicas: the test tests nothing"
    finally:
        server.stop()
