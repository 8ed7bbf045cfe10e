"""Draws bench/results/latest.png from latest.json. Runs under bench/.venv (matplotlib), stdlib otherwise.

    bench/.venv/bin/python bench/chart.py bench/results/latest.json bench/results/latest.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ("fake", "proxy", "litellm", "openai")
SHORT = {"fake": "fake (floor)", "proxy": "LiteLLM proxy", "litellm": "Chatspark litellm", "openai": "Chatspark openai"}
COLOURS = {"fake": "#999999", "proxy": "#d62728", "litellm": "#1f77b4", "openai": "#2ca02c"}


def get(data, *path):
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def bars(ax, names, groups, values, ylabel, title, log=False, labels=False):
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [g + i * width for g in range(len(groups))]
        ys = [values(name, g) or 0 for g in groups]
        drawn = ax.bar(xs, ys, width, label=SHORT[name], color=COLOURS[name])
        if labels:
            ax.bar_label(drawn, [f"{y:,.0f}" if y else "" for y in ys], fontsize=7)
    ax.set_xticks([g + width * (len(names) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")


def main(source: str, target: str) -> None:
    with open(source) as f:
        data = json.load(f)
    names = [n for n in ORDER if n in data.get("targets", {})]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    fig.suptitle(f"Chatspark vs LiteLLM proxy, same fake upstream ({data.get('mode')} run, {data.get('started')})")

    workers = [w for w in ("1w", "2w") if f"throughput_{w}" in data]
    bars(axes[0][0], names, workers, lambda n, w: get(data, f"throughput_{w}", n, "turns_per_s"),
         "turns/s (log)", "Throughput, new conversation, by workers per target", log=True, labels=True)
    axes[0][0].set_xticks(axes[0][0].get_xticks(), [w.replace("w", " worker(s)") for w in workers])
    axes[0][0].legend(fontsize=8)

    scenarios = ["new", "hist20", "hist100", "stream200"]
    bars(axes[0][1], [n for n in names if n != "fake"], scenarios,
         lambda n, s: (get(data, "targets", n, f"paired_{s}", "added_ttft_p50" if s == "stream200" else "added_p50")
                       or 0) * 1000,
         "ms (log)", "Added latency p50, one at a time (stream: added TTFT)", log=True)
    axes[0][1].legend(fontsize=8)

    ax = axes[1][0]
    levels = get(data, "plan", "sweep") or []
    for name in names:
        points = [(c, get(data, "targets", name, "sweep", i, "turns_per_s")) for i, c in enumerate(levels)]
        points = [(c, v) for c, v in points if v]
        if points:
            ax.plot(*zip(*points), marker="o", label=SHORT[name], color=COLOURS[name])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("connections")
    ax.set_ylabel("turns/s (log)")
    ax.set_title("Concurrency sweep, 1 worker", fontsize=10)
    ax.legend(fontsize=8)

    bars(axes[1][1], names, ["new", "hist100", "stream200"],
         lambda n, s: (get(data, "targets", n, f"closed_{s}", "cpu_per_turn") or 0) * 1e6,
         "µs CPU per turn (log)", "CPU per turn, all server processes", log=True)
    axes[1][1].legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
