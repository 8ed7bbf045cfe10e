"""The README's bench section is generated: the markers' content is replaced, nothing else, and each
issue-17 target reads its value from the results and says met, not met, or not measured."""

from __future__ import annotations

import pytest

from bench.readme import END, START, fill, targets_table


def test_only_what_lies_between_the_markers_is_replaced() -> None:
    readme = f"# Title\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n"
    assert fill(readme, "new table\n") == f"# Title\n\nbefore\n\n{START}\nnew table\n{END}\n\nafter\n"
    with pytest.raises(SystemExit):
        fill("no markers here", "x")


def _row(table: str, starts: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {starts}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_each_target_says_met_not_met_or_not_measured() -> None:
    data = {"mode": "full", "started": "t",
            "targets": {"litellm": {"closed_new": {"cpu_per_turn": 0.0025},
                                    "closed_stream200": {"cpu_per_turn": 0.0401}, "closed_stream1": {"cpu_per_turn": 0.0003},
                                    "slow_streams": {"count": 1000, "complete": 1000, "stalled": 0, "ttft_p99": 0.4,
                                                     "workers": 2}},
                        "openai": {"closed_new": {"cpu_per_turn": 0.0006},
                                   "slow_streams": {"count": 300, "complete": 300, "stalled": 0, "ttft_p99": 0.1}}},
            "throughput_1w": {"litellm": {"turns_per_s": 300.0}, "proxy": {"turns_per_s": 60.0}}}
    budgets = {"mode": "full", "started": "t", "grounded_chunks": 10_240,
               "rows": [{"feature": "retrieval: grounded turn", "added_p50_ms": 1.4, "added_cpu_ms": 1.0},
                        {"feature": "OpenAI-compatible layer", "added_p50_ms": 0.0, "added_cpu_ms": 0.15}]}
    table = targets_table(data, budgets)
    assert _row(table, "litellm backend: CPU per non-streaming turn")[1:] == ["2.50 ms", "yes"]
    assert _row(table, "litellm backend (shipped config")[1:] == ["200 µs", "no"]  # (40.1 − 0.3) ms / 199
    assert _row(table, "litellm backend: ≥ 4×")[1:] == ["5.0×", "yes"]
    assert _row(table, "litellm backend: 1,000")[2] == "yes"
    assert _row(table, "direct (openai) backend, shipped config: CPU")[1:] == ["0.60 ms", "no"]
    assert _row(table, "direct backend: ≥ 2,000")[1:] == ["not measured", "–"]
    assert _row(table, "direct backend: 2,000")[2] == "–"  # the run had 300 streams, not 2,000
    assert _row(table, "a grounded turn")[1:] == ["+1.40 ms (10,240 chunks)", "yes"]
    assert _row(table, "the OpenAI-compatible")[1:] == ["+150 µs", "no"]
