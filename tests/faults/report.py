"""The `make faults` table: one row per fault scenario, written to results/latest.md and .json.

`python -m tests.faults.report` prints the table of the last run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROWS: list[dict[str, Any]] = []  # filled by the tests of this session

COLUMNS = ("scenario", "faults injected", "requests sent", "acknowledged turns", "turns lost",
           "5xx seen (by code)", "max RSS drift", "fd drift")


def record(scenario: str, *, faults: dict[str, int], requests: int, acknowledged: int, lost: int,
           errors_5xx: dict[str, int], rss_drift_kb: int | None, fd_drift: int | None, **extra: Any) -> None:
    ROWS.append({
        "scenario": scenario, "faults": faults, "requests": requests, "acknowledged": acknowledged, "lost": lost,
        "errors_5xx": errors_5xx, "rss_drift_kb": rss_drift_kb, "fd_drift": fd_drift, **extra,
    })


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in sorted(counts.items())) or "none"


def _rss(kb: int | None) -> str:
    return "–" if kb is None else f"{kb / 1024:+.1f} MB"


def _fds(n: int | None) -> str:
    return "–" if n is None else f"{n:+d}"


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    faults: dict[str, int] = {}
    errors: dict[str, int] = {}
    for row in rows:
        for name, n in row["faults"].items():
            faults[name] = faults.get(name, 0) + n
        for name, n in row["errors_5xx"].items():
            errors[name] = errors.get(name, 0) + n
    drifts = [r["rss_drift_kb"] for r in rows if r["rss_drift_kb"] is not None]
    fds = [r["fd_drift"] for r in rows if r["fd_drift"] is not None]
    return {
        "scenario": "**total**", "faults": faults, "requests": sum(r["requests"] for r in rows),
        "acknowledged": sum(r["acknowledged"] for r in rows), "lost": sum(r["lost"] for r in rows),
        "errors_5xx": errors, "rss_drift_kb": max(drifts, key=abs) if drifts else None,
        "fd_drift": max(fds, key=abs) if fds else None,
    }


def markdown(rows: list[dict[str, Any]], when: str) -> str:
    lines = [f"Fault run of {when} (`make faults`).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in [*rows, _total(rows)] if rows else []:
        lines.append("| " + " | ".join([
            row["scenario"], _counts(row["faults"]), str(row["requests"]), str(row["acknowledged"]), str(row["lost"]),
            _counts(row["errors_5xx"]), _rss(row["rss_drift_kb"]), _fds(row["fd_drift"]),
        ]) + " |")
    notes = [f"- {row['scenario']}: {row['notes']}" for row in rows if row.get("notes")]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (directory / "latest.json").write_text(json.dumps({"when": when, "rows": ROWS, "total": _total(ROWS)}, indent=2) + "\n")
    (directory / "latest.md").write_text(markdown(ROWS, when))


def main() -> int:
    latest = RESULTS / "latest.json"
    if not latest.exists():
        print("no fault run yet: make faults", file=sys.stderr)
        return 1
    run = json.loads(latest.read_text())
    print(markdown(run["rows"], run["when"]), end="")
    return 1 if run["total"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
