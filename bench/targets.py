"""Starting and stopping everything the bench measures: the fake upstream, a private Redis, LiteLLM
proxy and Chatspark (per backend), each its own process group on 127.0.0.1, all killed on exit.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PROXY_BIN = ROOT / "bench" / ".venv-proxy" / "bin" / "litellm"
UPSTREAM_KEY = "sk-bench-upstream"  # the fake accepts anything; the targets insist on having a key
PROXY_MASTER_KEY = "sk-bench-master"
_workdir: Path | None = None


def workdir() -> Path:
    """This run's configs and server logs; made on first use (importing makes nothing), removed at exit."""
    global _workdir
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="chatspark-bench-"))
    return _workdir

_running: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts `cmd` in its own process group (so its workers die with it), output to a log file."""
    log = open(workdir() / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    _running.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # workers that outlived their supervisor are still in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc in _running:
        _running.remove(proc)


def stop_all() -> None:
    global _workdir
    for proc in list(reversed(_running)):
        stop(proc, grace=2.0)
    if _workdir is not None:
        shutil.rmtree(_workdir, ignore_errors=True)
        _workdir = None


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the runner's finally blocks, which stop everything


def raise_open_files_limit() -> None:
    """Servers inherit it: 2,000 streams take 2,000 client sockets plus as many upstream ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def install_cleanup() -> None:
    raise_open_files_limit()
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def log_tail(name: str, lines: int = 15) -> str:
    try:
        return "\n".join((workdir() / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def post(port: int, path: str, body: dict[str, Any], headers: dict[str, str], timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_200(proc: subprocess.Popen[bytes], name: str, port: int, path: str, body: dict[str, Any],
                 headers: dict[str, str], timeout: float) -> float:
    """Seconds from now until `path` answers 200; raises if the process dies or time runs out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(name)}")
        try:
            status, data = post(port, path, body, headers)
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{name} did not answer 200 within {timeout:.0f} s:\n{log_tail(name)}")


# --- the pieces --------------------------------------------------------------------------------


@dataclass
class Fake:
    port: int
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> Fake:
        port = free_port()
        proc = spawn("fake", [str(VENV_BIN / "python"), "-m", "bench.fake_upstream", "--port", str(port)])
        wait_for_200(proc, "fake", port, "/v1/chat/completions", {"model": "bench"}, {}, 10)
        return cls(port, proc)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Redis:
    """A private redis-server: its INFO counters then count only this bench's traffic."""

    port: int
    proc: subprocess.Popen[bytes]
    client: Any = None

    @classmethod
    def start(cls) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        proc = spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(workdir()), "--maxclients", "10000"])
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(200):
            try:
                client.ping()
                return cls(port, proc, client)
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start:\n{log_tail('redis')}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def counters(self) -> dict[str, int]:
        """Calls per command, plus `reads` (read events: one per client round trip, pipelines included)."""
        info = self.client.info("commandstats")
        found = {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}
        found["reads"] = int(self.client.info("stats").get("total_reads_processed", 0))
        return found


@dataclass
class Server:
    """One measured HTTP service: `kind` is "fake", "proxy" or "chatspark"."""

    name: str
    kind: str
    port: int
    proc: subprocess.Popen[bytes] | None
    workers: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    cold_start: float | None = None  # spawn to first 200 on a chat turn
    settle_s: float = 0.0  # then until its processes went idle (other workers still starting)

    def pids(self) -> list[int]:
        return procstat.tree(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None and self.kind != "fake":
            stop(self.proc)


def fake_server(fake: Fake) -> Server:
    return Server("fake (floor)", "fake", fake.port, fake.proc)


def start_proxy(name: str, fake: Fake, models: list[str], workers: int) -> Server:
    """LiteLLM proxy from its own venv, one `model_list` entry per fake model, pointed at the fake."""
    port = free_port()
    lines = ["model_list:"]
    for model in models:
        lines += [f"  - model_name: {model}", "    litellm_params:", f"      model: openai/{model}",
                  f"      api_base: {fake.api_base}", f"      api_key: {UPSTREAM_KEY}"]
    lines += ["general_settings:", f"  master_key: {PROXY_MASTER_KEY}"]
    config = workdir() / f"{name}.yaml"
    config.write_text("\n".join(lines) + "\n")
    env = {"LITELLM_OFFLINE_MODE": "true", "LITELLM_LOG": "ERROR", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    # uvicorn kills a worker that does not answer its health check within 5 s; a proxy worker spends
    # longer than that importing litellm on a loaded machine, so with 2 workers it was killed and
    # respawned until the bench gave up. The check's timeout changes nothing once workers run.
    proc = spawn(name, [str(PROXY_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                        "--num_workers", str(workers), "--timeout_worker_healthcheck", "120"], env)
    headers = {"authorization": f"Bearer {PROXY_MASTER_KEY}"}
    body = {"model": models[0], "messages": [{"role": "user", "content": "hello"}]}
    wait_for_200(proc, name, port, "/v1/chat/completions", body, headers, 150)
    return Server(name, "proxy", port, proc, workers, headers, time.perf_counter() - started)


# Per-key limits stay on (their Redis work is part of a turn) but far above what the bench sends.
BENCH_LIMITS = {"rate_per_minute": 1_000_000_000, "monthly_cap_live": 0}


def config_fields() -> dict[str, list[str]]:
    """The fields of each config section this checkout knows (limits arrive in a later change)."""
    code = ("import json, msgspec; from chatspark.config import Config; "
            "print(json.dumps({f.name: [g.name for g in msgspec.structs.fields(f.type)] "
            "for f in msgspec.structs.fields(Config) if isinstance(f.type, type) "
            "and issubclass(f.type, msgspec.Struct)}))")
    done = subprocess.run([str(VENV_BIN / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def chatspark_config(fake: Fake, backend: str, agents: list[dict[str, Any]], fields: dict[str, list[str]]) -> str:
    """A bench config: one model per fake model name (all on `backend`), one agent per scenario."""
    out = ['default_temperature = 0.2', '', '[server]', 'host = "127.0.0.1"',
           # Per-request log lines would be charged to every turn; the proxy logs none either.
           'log_level = "warning"', '', '[store]', 'prefix = "bench"', '']
    limits = [f"{k} = {v}" for k, v in BENCH_LIMITS.items() if k in fields.get("limits", [])]
    if limits:
        out += ["[limits]", *limits, ""]
    return "\n".join(out + _models_and_agents(fake, backend, agents, retries=0))


# What the shipped config's limits become in the bench: the same checks run on every turn (the
# per-minute counter, the test key's monthly cap: a credit held and charged), but with numbers the
# bench's thousands of turns a minute never reach.
SHIPPED_LIMITS = {"rate_per_minute": 1_000_000_000, "monthly_cap_test": 1_000_000_000}


def shipped_config(fake: Fake, backend: str, agents: list[dict[str, Any]]) -> str:
    """`config.toml` as a user runs it (access log at info, text; models with `retries = 1`; limits
    on), with the shipped models, agents and seeded knowledge swapped for the bench's (the same
    model settings as the shipped `gpt-4o-mini`: on `backend`, pointed at the fake) and the limits'
    numbers raised (SHIPPED_LIMITS)."""
    sections: list[list[str]] = [[]]
    for line in (ROOT / "config.toml").read_text().splitlines():
        if line.startswith("["):
            sections.append([])
        sections[-1].append(line)
    kept = [lines for lines in sections
            if not lines or not lines[0].startswith(("[models.", "[[agents]]", "[[knowledge.seed]]"))]
    out: list[str] = []
    for lines in kept:
        for line in lines:
            name = line.split("=", 1)[0].strip()
            if lines[0].strip() == "[limits]" and name in SHIPPED_LIMITS:
                line = f"{name} = {SHIPPED_LIMITS[name]}"
            out.append(line)
    return "\n".join(out + _models_and_agents(fake, backend, agents, retries=1))


def _models_and_agents(fake: Fake, backend: str, agents: list[dict[str, Any]], *, retries: int) -> list[str]:
    """One model per fake model name (all on `backend`, pointed at the fake), one agent per scenario."""
    out: list[str] = []
    for model in sorted({a["model"] for a in agents}):
        out += [f'[models.{model}]', f'backend = "{backend}"', f'provider_model = "openai/{model}"',
                f'api_base = "{fake.api_base}"', 'api_key_env = "BENCH_UPSTREAM_KEY"', 'context_window = 128000',
                'max_output_tokens = 4096', 'timeout_seconds = 60', f'retries = {retries}', '']
    for agent in agents:
        out += ['[[agents]]', f'id = {agent["id"]}', f'name = "{agent["name"]}"', f'model = "{agent["model"]}"',
                'botPersonality = "You are a friendly support assistant for Example Inc. Keep answers short."',
                f'historyTurns = {agent["history_turns"]}', '']
    return out


def chatspark_env(name: str, config_text: str, redis: Redis) -> dict[str, str]:
    config = workdir() / f"{name}.toml"
    config.write_text(config_text)
    return {"CHATSPARK_CONFIG": str(config), "REDIS_URL": redis.url, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
            "LITELLM_OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1", "LITELLM_LOG": "ERROR"}


def create_key(env: dict[str, str], *options: str) -> str:
    """A key made as a user makes one (`chatspark keys create`, plus `options`, e.g. `--test`)."""
    done = subprocess.run([str(VENV_BIN / "chatspark"), "keys", "create", "--name", "bench", *options], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"chatspark keys create failed: {done.stderr.strip()[-800:]}")
    return done.stdout.strip().splitlines()[-1]


def start_chatspark(name: str, env: dict[str, str], key: str, workers: int, first_agent: int) -> Server:
    port = free_port()
    started = time.perf_counter()
    proc = spawn(name, [str(VENV_BIN / "chatspark"), "serve", "--port", str(port), "--workers", str(workers)], env)
    headers = {"authorization": f"Bearer {key}"}
    wait_for_200(proc, name, port, f"/api/v1/agents/{first_agent}/chat", {"message": "hello"}, headers, 120)
    return Server(name, "chatspark", port, proc, workers, headers, time.perf_counter() - started)


def settle(server: Server, timeout: float = 15.0) -> float:
    """Waits until the server's processes are idle: "ready" means one worker answered, while the
    others may still be importing (litellm: ~3 s of CPU each), which would be charged to the first
    measurement. Returns the seconds waited."""
    started = time.perf_counter()
    pids = server.pids()
    last = procstat.cpu_seconds(pids)
    while time.perf_counter() - started < timeout:
        time.sleep(0.5)
        now = procstat.cpu_seconds(pids)
        if now - last < 0.05:  # under 10% of one core over half a second
            break
        last = now
    return time.perf_counter() - started


def python_can_import(module: str) -> str | None:
    """None when `.venv` imports `module`, else the error's last line (for the report's notes)."""
    done = subprocess.run([str(VENV_BIN / "python"), "-c", f"import {module}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


if __name__ == "__main__":  # a smoke check: start the fake and Redis, then stop them
    install_cleanup()
    print(Fake.start(), Redis.start(), file=sys.stderr)
