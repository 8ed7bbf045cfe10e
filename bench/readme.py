"""The README's bench section, regenerated from the results: `.venv/bin/python -m bench.readme`.

Fills what lies between `<!-- bench:start -->` and `<!-- bench:end -->` in README.md with issue
17's targets (each with its measured value, met or not), the main table and the feature budgets,
rendered from `bench/results/latest.json` and `budgets.json`. `make bench` runs it after a full run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.budgets import markdown as budgets_markdown
from bench import report
from bench.report import _get
from bench.targets import ROOT

RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _per_chunk(data: dict[str, Any], name: str) -> float | None:
    many = _get(data, "targets", name, "closed_stream200", "cpu_per_turn")
    one = _get(data, "targets", name, "closed_stream1", "cpu_per_turn")
    return (many - one) / 199 if isinstance(many, float) and isinstance(one, float) else None


def _ratio(data: dict[str, Any], name: str) -> float | None:
    mine = _get(data, "throughput_1w", name, "turns_per_s")
    proxy = _get(data, "throughput_1w", "proxy", "turns_per_s")
    return mine / proxy if mine and proxy else None


def _budget(budgets: dict[str, Any], starts: str, field: str) -> float | None:
    for row in budgets.get("rows", []):
        if row["feature"].startswith(starts):
            return row[field]
    return None


def _slow(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry = _get(data, "targets", name, "slow_streams")
    return entry if isinstance(entry, dict) and "count" in entry else {}


# (target, how it reads, value or None, met) — value text and a verdict per target.
Target = tuple[str, Callable[[dict[str, Any], dict[str, Any]], tuple[str, bool | None]]]


def _check(value: float | None, limit: float, text: Callable[[float], str], at_least: bool = False) -> tuple[str, bool | None]:
    if value is None:
        return "not measured", None
    return text(value), (value >= limit if at_least else value <= limit)


def _slow_check(name: str, count: int, ttft_limit: float | None) -> Callable[[dict[str, Any], dict[str, Any]], tuple[str, bool | None]]:
    def check(data: dict[str, Any], budgets: dict[str, Any]) -> tuple[str, bool | None]:
        s = _slow(data, name)
        if not s:
            return "not measured", None
        text = (f"{s['complete']:,}/{s['count']:,} complete, {s['stalled']} stalled, TTFT p99 "
                f"{s['ttft_p99'] * 1000:,.0f} ms" if s.get("ttft_p99") is not None else
                f"{s['complete']:,}/{s['count']:,} complete, {s['stalled']} stalled")
        text += f" ({s.get('workers') or '?'} workers)"
        if s["count"] < count:
            return text + f"; the run had {s['count']:,}, not {count:,}", None
        met = s["complete"] == s["count"] and s["stalled"] == 0
        if ttft_limit is not None:
            met = met and s.get("ttft_p99") is not None and s["ttft_p99"] <= ttft_limit
        return text, met
    return check


TARGETS: list[Target] = [
    ("litellm backend (shipped config, capped test key): CPU per relayed chunk ≤ 150 µs",
     lambda d, b: _check(_per_chunk(d, "litellm"), 150e-6, lambda v: f"{v * 1e6:.0f} µs")),
    ("litellm backend: CPU per non-streaming turn ≤ 3 ms",
     lambda d, b: _check(_get(d, "targets", "litellm", "closed_new", "cpu_per_turn"), 3e-3,
                         lambda v: f"{v * 1000:.2f} ms")),
    ("litellm backend: ≥ 4× LiteLLM proxy's turns/s (1 worker each)",
     lambda d, b: _check(_ratio(d, "litellm"), 4, lambda v: f"{v:.1f}×", at_least=True)),
    ("litellm backend: 1,000 concurrent slow streams complete, 0 stalled, on 2 workers",
     lambda d, b: _slow_check("litellm", 1000, None)(d, b)),
    ("direct (openai) backend, shipped config: CPU per non-streaming turn ≤ 0.45 ms",
     lambda d, b: _check(_get(d, "targets", "openai", "closed_new", "cpu_per_turn"), 0.45e-3,
                         lambda v: f"{v * 1000:.2f} ms")),
    ("direct backend: ≥ 2,000 turns/s with 2 workers",
     lambda d, b: _check(_get(d, "throughput_2w", "openai", "turns_per_s"), 2000, lambda v: f"{v:,.0f}",
                         at_least=True)),
    ("direct backend: CPU per relayed chunk ≤ 20 µs",
     lambda d, b: _check(_per_chunk(d, "openai"), 20e-6, lambda v: f"{v * 1e6:.0f} µs")),
    ("direct backend: 2,000 concurrent slow streams, TTFT p99 ≤ 1 s, on 2 workers",
     lambda d, b: _slow_check("openai", 2000, 1.0)(d, b)),
    ("a grounded turn (10k chunks) adds ≤ 2 ms p50 over a plain one",
     lambda d, b: _grounded(b)),
    ("the OpenAI-compatible endpoint adds ≤ 0.1 ms CPU per turn over the native one",
     lambda d, b: _noisy(b, _check(_budget(b, "OpenAI-compatible", "added_cpu_ms"), 0.1,
                                   lambda v: f"{v * 1000:+.0f} µs"))),
    ("credit hold + charge + access line (with metrics) ≤ 0.2 ms CPU per turn together (budgets, in process)",
     lambda d, b: _noisy(b, _check(_sum(_budget(b, "monthly cap", "added_cpu_ms"),
                                        _budget(b, "metrics + access", "added_cpu_ms")),
                                   0.2, lambda v: f"{v * 1000:+.0f} µs"))),
    ("the same on a served turn: shipped config − bench config, CPU per turn, openai backend ≤ 0.2 ms",
     lambda d, b: _check(_shipped_extra(d, "openai"), 0.2e-3, lambda v: f"{v * 1e6:+.0f} µs")),
    ("… and on the litellm backend (no issue target; the same features, a noisier turn)",
     lambda d, b: (_check(_shipped_extra(d, "litellm"), 0.2e-3, lambda v: f"{v * 1e6:+.0f} µs")[0], None)),
]


def _shipped_extra(data: dict[str, Any], backend: str) -> float | None:
    shipped = _get(data, "targets", backend, "closed_new", "cpu_per_turn")
    tuned = _get(data, "targets", f"{backend}-tuned", "closed_new", "cpu_per_turn")
    return shipped - tuned if isinstance(shipped, float) and isinstance(tuned, float) else None


def _noisy(budgets: dict[str, Any], checked: tuple[str, bool | None]) -> tuple[str, bool | None]:
    """A budget's value with the run's noise: the control row (the plain turn against itself)."""
    noise = _budget(budgets, "control", "added_cpu_ms")
    return (checked[0] + (f" (control row: {noise * 1000:+.0f} µs)" if noise is not None else ""), checked[1])


def _grounded(budgets: dict[str, Any]) -> tuple[str, bool | None]:
    chunks = budgets.get("grounded_chunks", 0)
    text, met = _check(_budget(budgets, "retrieval", "added_p50_ms"), 2.0, lambda v: f"{v:+.2f} ms ({chunks:,} chunks)")
    return (text + "; the run had fewer than 10k chunks", None) if met is not None and chunks < 9_000 else (text, met)


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def targets_table(data: dict[str, Any], budgets: dict[str, Any]) -> str:
    lines = [f"### Issue 17 targets (bench {data.get('mode')} run {data.get('started')}, budgets "
             f"{budgets.get('mode', '–')} run {budgets.get('started', '–')})", "",
             "| target | measured | met |", "|---|---|---|"]
    for title, check in TARGETS:
        try:
            text, met = check(data, budgets)
        except (KeyError, TypeError) as exc:
            text, met = f"not measured ({type(exc).__name__})", None
        lines.append(f"| {title} | {text} | {'yes' if met else 'no' if met is not None else '–'} |")
    return "\n".join(lines) + "\n"


def section(folder: Path) -> str:
    data = json.loads((folder / "latest.json").read_text())
    budgets_path = folder / "budgets.json"
    budgets = json.loads(budgets_path.read_text()) if budgets_path.exists() else {}
    parts = [targets_table(data, budgets), report.markdown(data)]
    if budgets:
        parts.append(budgets_markdown(budgets))
    return "\n".join(parts)


def fill(readme: str, body: str) -> str:
    head, found, rest = readme.partition(START)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"README.md has no {START} … {END} markers")
    return f"{head}{START}\n{body.strip()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--print", action="store_true", help="print the section instead of writing README.md")
    args = parser.parse_args(argv)
    body = section(Path(args.results))
    if args.print:
        print(body)
        return 0
    path = Path(args.readme)
    path.write_text(fill(path.read_text(), body))
    print(f"README.md: bench section regenerated from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
