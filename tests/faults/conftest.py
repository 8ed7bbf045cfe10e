"""The `faults` marker (long runs: `make faults` only), and the rig every fault test shares: a private
Redis, a faulty fake upstream in its own process, and one `chatspark serve` process on them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import report
from tests.faults.harness import PrivateRedis, Rig, ServiceProcess, UpstreamProcess, write_config

FAULTS_ENV = "CHATSPARK_FAULTS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: a long fault run; selected by `-m faults` (make faults) or CHATSPARK_FAULTS=1")


def faults_selected(config: pytest.Config) -> bool:
    return "faults" in (config.getoption("markexpr", "") or "") or os.environ.get(FAULTS_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if faults_selected(config):
        return
    skip = pytest.mark.skip(reason="a long fault run: `make faults` (or -m faults, or CHATSPARK_FAULTS=1)")
    for item in items:
        if item.get_closest_marker("faults") is not None:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if report.ROWS and faults_selected(session.config):
        report.write(report.RESULTS)


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    workdir = Path(tempfile.mkdtemp(prefix="chatspark-faults-"))
    redis = PrivateRedis().start()
    upstream = UpstreamProcess().start()
    service = None
    try:
        config = write_config(workdir / "config.toml", upstream.base_url)
        service = ServiceProcess(config, redis.url, upstream.base_url, workdir / "server.log").wait_ready()
        yield Rig(redis=redis, upstream=upstream, service=service, key=service.mint_key(), workdir=workdir)
    finally:
        if service is not None:
            service.stop()
            # Kept for a post-mortem (results/ is not versioned).
            report.RESULTS.mkdir(exist_ok=True)
            (report.RESULTS / "server.log").write_bytes(service.log_path.read_bytes())
        upstream.stop()
        redis.stop()
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


@pytest.fixture
def fresh_rig(rig: Rig) -> Rig:
    rig.check_alive()
    return rig
