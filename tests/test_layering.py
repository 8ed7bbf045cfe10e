"""The layers hold (import-linter's contracts in pyproject.toml), and the check does catch a break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree's packages before the installed ones
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_the_layering_contracts_are_kept() -> None:
    checked = lint(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "BROKEN" not in checked.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("chatspark/turn.py", "import redis", "only the store talks to Redis"),
        ("chatspark/api/chat.py", "from chatspark.store.layout import Layout", "keys, scripts and the client stay inside the store"),
        ("chatspark/store/keys.py", "from starlette.responses import Response", "the store knows neither HTTP"),
        ("backends/local.py", "from chatspark import errors", "backends know nothing of the service"),
        ("chatspark/errors.py", "import starlette", "the contract's errors are data"),
    ],
)
def test_a_violating_import_breaks_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for part in ("chatspark", "backends"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text().replace("from __future__ import annotations\n", f"from __future__ import annotations\n\n{line}\n", 1))
    checked = lint(tmp_path)
    assert checked.returncode != 0
    broken = [row for row in checked.stdout.splitlines() if row.endswith("BROKEN") or "BROKEN (" in row]
    assert any(row.startswith(contract) for row in broken), checked.stdout
