"""The results as a markdown table (printed and written to latest.md) and the chart (via bench/.venv)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.targets import ROOT

ORDER = ("fake", "proxy", "litellm", "openai", "litellm-tuned", "openai-tuned")
SHORT = {"fake": "fake direct (floor)", "proxy": "LiteLLM proxy", "litellm": "Chatspark litellm",
         "openai": "Chatspark openai", "litellm-tuned": "litellm, bench config", "openai-tuned": "openai, bench config"}
CONFIGS = ("**Chatspark litellm / openai**: the shipped `config.toml` as a user runs it (access line at `info`, "
           "a `chatspark keys create --test` key with its monthly cap, so every turn holds and charges a credit; "
           "`retries = 1`), only the limits' numbers raised out of the bench's reach. **bench config**: access "
           "line off (`warning`), an uncapped live key, `retries = 0` (the bench's numbers before issue 17).")

Row = tuple[str, Callable[[dict[str, Any], str], str]]


def _get(data: dict[str, Any], *path: str | int) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)  # type: ignore[assignment]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def ms(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value * 1000:.2f} ms"


def us(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value * 1e6:.0f} µs"


def num(value: Any, digits: int = 0) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def _turns(data: dict[str, Any], name: str, workers: str) -> str:
    value = _get(data, f"throughput_{workers}", name, "turns_per_s")
    if value is None:
        return "–"
    proxy = _get(data, f"throughput_{workers}", "proxy", "turns_per_s")
    floor = _get(data, f"throughput_{workers}", "fake", "turns_per_s")
    ratios = []
    if proxy and name != "proxy":
        ratios.append(f"{value / proxy:.1f}× proxy")
    if floor and name != "fake":
        ratios.append(f"{100 * value / floor:.2g}% of floor")
    return f"{value:,.0f}" + (f" ({', '.join(ratios)})" if ratios else "")


def _paired(key: str, field: str, unit: Callable[[Any], str] = ms) -> Callable[[dict[str, Any], str], str]:
    def cell(data: dict[str, Any], name: str) -> str:
        entry = _get(data, "targets", name, f"paired_{key}")
        if isinstance(entry, dict) and "error" in entry:
            return "failed"
        text = unit(_get(entry, field))
        errors = _get(entry, "errors")
        return text + (f" ({errors} errors)" if errors else "")
    return cell


def _p50_p99(key: str) -> Callable[[dict[str, Any], str], str]:
    def cell(data: dict[str, Any], name: str) -> str:
        entry = _get(data, "targets", name, f"paired_{key}")
        if isinstance(entry, dict) and "error" in entry:
            return "failed"
        return f"{ms(_get(entry, 'added_p50'))} / {ms(_get(entry, 'added_p99'))}"
    return cell


def _closed(key: str, field: str, unit: Callable[[Any], str]) -> Callable[[dict[str, Any], str], str]:
    def cell(data: dict[str, Any], name: str) -> str:
        entry = _get(data, "targets", name, f"closed_{key}")
        if isinstance(entry, dict) and "error" in entry:
            return "failed"
        bad = (_get(entry, "non_200") or 0) + (_get(entry, "failures") or 0)
        return unit(_get(entry, field)) + (f" ({bad} errors)" if bad else "")
    return cell


def _per_chunk(data: dict[str, Any], name: str) -> str:
    many = _get(data, "targets", name, "closed_stream200", "cpu_per_turn")
    one = _get(data, "targets", name, "closed_stream1", "cpu_per_turn")
    if not isinstance(many, float) or not isinstance(one, float):
        return "–"
    return us((many - one) / 199)


def _slow(data: dict[str, Any], name: str) -> str:
    entry = _get(data, "targets", name, "slow_streams")
    if not isinstance(entry, dict) or "error" in entry:
        return "failed" if entry else "–"
    return (f"{entry['complete']:,}/{entry['count']:,} complete, {entry['stalled']} stalled, "
            f"max gap {ms(entry['gap_max'])}, {entry.get('streaming_at_sample', 0):,} streaming at once, "
            f"TTFT p99 {ms(entry['ttft_p99'])}")


def _slow_rss(data: dict[str, Any], name: str) -> str:
    entry = _get(data, "targets", name, "slow_streams") or {}
    value = entry.get("rss_per_stream_kb")
    if value is None:
        return "–"
    behind = entry.get("streaming_at_sample", 0) < entry.get("count", 0)
    return f"{value:.1f} KB" + (f" (≤; {entry.get('streaming_at_sample', 0):,} streaming)" if behind else "")


def _open(data: dict[str, Any], name: str) -> str:
    entry = _get(data, "targets", name, "open_loop")
    if not isinstance(entry, dict) or "error" in entry:
        return "failed" if entry else "–"
    bad = entry["errors"] + entry["non_200"] + entry["dropped"]
    return f"{ms(entry['p50'])} / {ms(entry['p99'])}" + (f" ({bad} failed)" if bad else "")


def _cold(data: dict[str, Any], name: str) -> str:
    value = _get(data, "targets", name, "start", "cold_start_s")
    return "–" if value is None or name == "fake" else f"{value:.2f} s"


def _redis(data: dict[str, Any], name: str) -> str:
    entry = _get(data, "targets", name, "closed_new")
    if not isinstance(entry, dict) or "redis_commands_per_turn" not in entry:
        return "–"
    hist = _get(data, "targets", name, "closed_hist20") or {}
    text = f"{entry['redis_commands_per_turn']:.1f} / {entry['redis_round_trips_per_turn']:.1f}"
    if "redis_commands_per_turn" in hist:
        text += f" (history: {hist['redis_commands_per_turn']:.1f} / {hist['redis_round_trips_per_turn']:.1f})"
    return text


ROWS: list[Row] = [
    ("turns/s, 1 worker each (new conversation, median of runs)", lambda d, n: _turns(d, n, "1w")),
    ("turns/s, 2 workers each", lambda d, n: _turns(d, n, "2w")),
    ("CPU per turn, all processes (new conversation)", _closed("new", "cpu_per_turn", us)),
    ("CPU per turn, 100-message history", _closed("hist100", "cpu_per_turn", us)),
    ("added latency p50 / p99, new conversation (one at a time)", _p50_p99("new")),
    ("added latency p50 / p99, 20-message history", _p50_p99("hist20")),
    ("added latency p50 / p99, 100-message history", _p50_p99("hist100")),
    ("added TTFT p50, 200-chunk stream", _paired("stream200", "added_ttft_p50")),
    ("added whole-stream time p50, 200 chunks unpaced", _paired("stream200", "added_p50")),
    ("added gap between chunks (mean), paced 1 ms", _paired("stream200p", "added_gap_mean", us)),
    ("CPU per relayed chunk", _per_chunk),
    ("turns/s, 200-chunk streams (16 connections)", _closed("stream200", "turns_per_s", num)),
    ("concurrent slow streams", _slow),
    ("RSS per open stream", _slow_rss),
    ("open loop at a fixed rate: latency p50 / p99", _open),
    ("cold start to first 200 (chat turn)", _cold),
    ("Redis commands executed (Lua-internal included) / round trips per turn", _redis),
]


def markdown(data: dict[str, Any]) -> str:
    names = [n for n in ORDER if n in data.get("targets", {})]
    load = [_get(data, "machine", f"load_at_{when}") for when in ("start", "end")]
    loaded = (f", load average {load[0]:.1f} at the start and {load[1]:.1f} at the end"
              if all(isinstance(v, float) for v in load) else "")
    out = [f"### Chatspark benchmark ({data.get('mode')} run, {data.get('started')}, "
           f"{_get(data, 'machine', 'cpus')} CPUs{loaded}, everything on one machine, commit {_get(data, 'commit')})", ""]
    out += [CONFIGS, ""]
    out.append("| metric | " + " | ".join(SHORT[n] for n in names) + " |")
    out.append("|---|" + "---|" * len(names))
    for title, cell in ROWS:
        if title.startswith("turns/s, 2 workers") and "throughput_2w" not in data:
            continue
        if title.startswith("open loop"):
            title = f"open loop at {_get(data, 'plan', 'open_rate')} turns/s: latency p50 / p99"
        if title.startswith("concurrent slow streams"):
            title = "concurrent slow streams, 2 workers each (40 chunks, 250 ms apart)"
        out.append(f"| {title} | " + " | ".join(cell(data, n) for n in names) + " |")
    out += ["", _sweep(data, names), "", _calibration(data)]
    errors = [f"- {SHORT[n]}: {k}: {v['error']}" for n in names for k, v in data["targets"][n].items()
              if isinstance(v, dict) and "error" in v]
    notes = [f"- {note}" for note in data.get("notes", [])] + errors
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out) + "\n"


def _sweep(data: dict[str, Any], names: list[str]) -> str:
    levels = _get(data, "plan", "sweep") or []
    names = [n for n in names if _get(data, "targets", n, "sweep")]
    rows = ["Concurrency sweep, new conversation, 1 worker (wrk, closed loop): turns/s (p99 latency)", "",
            "| connections | " + " | ".join(SHORT[n] for n in names) + " |", "|---|" + "---|" * len(names)]
    for i, level in enumerate(levels):
        cells = []
        for n in names:
            entry = _get(data, "targets", n, "sweep", i)
            if not isinstance(entry, dict) or "turns_per_s" not in entry:
                cells.append("failed" if entry else "–")
                continue
            bad = entry["non_2xx"] + entry["socket_errors"]
            cells.append(f"{entry['turns_per_s']:,.0f} ({ms(entry['p99'])})" + (f", {bad} errors" if bad else ""))
        rows.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _calibration(data: dict[str, Any]) -> str:
    cal = data.get("calibration") or {}
    parts = []
    if isinstance(cal.get("wrk_closed"), dict) and "turns_per_s" in cal["wrk_closed"]:
        parts.append(f"wrk {cal['wrk_closed']['turns_per_s']:,.0f} req/s")
    if isinstance(cal.get("loadgen_closed"), dict) and "turns_per_s" in cal["loadgen_closed"]:
        parts.append(f"bench loadgen (closed loop) {cal['loadgen_closed']['turns_per_s']:,.0f} req/s")
    if isinstance(cal.get("loadgen_open"), dict) and "achieved" in cal["loadgen_open"]:
        o = cal["loadgen_open"]
        parts.append(f"bench loadgen (open loop) held {o['achieved']:,.0f} of {o['rate']:,} req/s, "
                     f"its own send lag p99 {ms(o['generator_lag_p99'])}")
    return ("Load generators against the fake alone (their ceiling; every target must sit far below it): "
            + "; ".join(parts) + ".") if parts else "Load generator calibration failed."


def chart(json_path: Path, png_path: Path) -> Path | None:
    """Draws the chart with bench/.venv's matplotlib (kept out of the service's own environment)."""
    python = ROOT / "bench" / ".venv" / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run([str(python), str(ROOT / "bench" / "chart.py"), str(json_path), str(png_path)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        print(f"chart failed: {done.stderr.strip()[-500:]}")
        return None
    return png_path
