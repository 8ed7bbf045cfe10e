"""The wheel holds every module and data file the service needs (a hand-kept package list once
left chatspark.store out, so `pip install .` gave a service that could not start)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    # sdist, then the wheel from it in a clean folder: a stale build/ here cannot hide a missing file.
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "build", "--quiet", "--out-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=120,
    )
    (wheel,) = tmp_path.glob("*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    # The client libraries (clients/) are packages of their own, never part of the server's wheel.
    assert not any(name.startswith(("clients/", "chatspark_client/")) for name in packed)
    wanted = {
        str(path.relative_to(ROOT))
        for top in ("chatspark", "backends")
        for path in (ROOT / top).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert wanted, "found no source files: the test looked in the wrong place"
    assert sorted(wanted - packed) == []
