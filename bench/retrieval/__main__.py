"""`python -m bench.retrieval [--quick]`: retrieval quality on the labelled set and the index's
latency, memory and build time per agent size. See bench/retrieval/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import msgspec
import numpy as np

from bench.retrieval import quality, scale
from chatspark.knowledge.index import Fusion
from chatspark.knowledge.words import terms

RESULTS = Path(__file__).parent.parent / "results"


def by_overlap(fusion: Fusion) -> dict[str, dict[str, float]]:
    """Hybrid quality on the answerable questions that share a content word with their passage,
    and on those that share none (only the vectors can find those)."""
    agents = quality.agents()
    groups: dict[str, list[int]] = {"shares a word": [], "shares no word": []}
    for n, question in enumerate(quality.questions()):
        if question.expected == "none":
            continue
        words: set[str] = set()
        for passage in agents[question.agent].passages:
            if quality.corpus.answers(passage.id, question.expected):
                words |= set(terms(" ".join(p for p in (passage.title, passage.heading, passage.text) if p)))
        groups["shares a word" if set(terms(question.question)) & words else "shares no word"].append(n)
    found = {}
    for name, members in groups.items():
        found[name] = {}
        for mode, change in quality.MODES.items():
            index_fusion = msgspec.structs.replace(fusion, **change)
            found[name][mode] = quality.evaluate(index_fusion, only=set(members))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval")
    parser.add_argument("--quick", action="store_true", help="skip the 100k-passage row")
    parser.add_argument("--misses", action="store_true", help="only list the questions the hybrid gets wrong")
    args = parser.parse_args()
    fusion = Fusion()
    if args.misses:
        for miss in quality.misses(fusion):
            print(json.dumps(miss, ensure_ascii=False))
        return 0
    report: dict[str, object] = {"fusion": {f: getattr(fusion, f) for f in fusion.__struct_fields__}, "set": quality.describe_set()}
    report["quality"] = {split or "all": quality.evaluate_modes(fusion, split) for split in ("dev", "test", None)}
    report["by_overlap"] = by_overlap(fusion)
    sizes = scale.SIZES[:2] if args.quick else scale.SIZES
    rows = [scale.run(size) for size in sizes] + [scale.run(10_000, blas_threads="default")]
    report["scale"] = rows
    report["query_embedding"] = scale.query_embedding()
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                         "load_average_1m": os.getloadavg()[0]}  # other work on the machine inflates the latency rows
    table = render(report)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.md").write_text(table)
    (RESULTS / "retrieval.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def render(report: dict) -> str:  # type: ignore[type-arg]
    s = report["set"]
    lines = [
        "# Retrieval bench",
        "",
        f"{s['companies']} help centres, {s['passages']} passages; {s['questions']} questions: {s['answerable']} answerable "
        f"({s['no_shared_content_word']} share no content word with their passage), {s['unanswerable']} the corpus cannot answer; "
        f"{s['held_out']} held out (test), the rest tuned on (dev).",
        "",
        "| split | mode | questions | top-1 | recall@5 | MRR@10 | no-answer precision | no-answer recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for split, modes in report["quality"].items():
        for mode, m in modes.items():
            lines.append(
                f"| {split} | {mode} | {m['questions']:.0f} | {m['top1']:.3f} | {m['recall@5']:.3f} | {m['mrr@10']:.3f} "
                f"| {m['no_answer_precision']:.3f} | {m['no_answer_recall']:.3f} |"
            )
    lines += ["", "Answerable questions (all splits) by whether they share a content word with their passage:", "",
              "| questions | mode | n | top-1 | recall@5 | MRR@10 |", "|---|---|---:|---:|---:|---:|"]
    for group, modes in report["by_overlap"].items():
        for mode, m in modes.items():
            lines.append(f"| {group} | {mode} | {m['questions']:.0f} | {m['top1']:.3f} | {m['recall@5']:.3f} | {m['mrr@10']:.3f} |")
    e = report["query_embedding"]
    lines += ["", "One agent's index (synthetic passages of 150 words, 256-d vectors); search of one query, top 5, embedding excluded:", "",
              "| passages | BLAS threads | search p50 ms | search p99 ms | build s per 1k | index RSS MB | index nbytes MB | process RSS MB |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["scale"]:
        lines.append(
            f"| {r['passages']:,} | {r['blas_threads']} | {r['search_p50_ms']:.2f} | {r['search_p99_ms']:.2f} | {r['build_s_per_1k']:.3f} "
            f"| {r['index_rss_mb']:.0f} | {r['index_nbytes_mb']:.0f} | {r['process_rss_mb']:.0f} |"
        )
    lines += ["", f"Embedding one question (wordllama 256-d, offline): p50 {e['embed_p50_ms']:.3f} ms, p99 {e['embed_p99_ms']:.3f} ms.",
              f"Machine: {report['machine']['cpus']} CPUs shared with other work (load average {report['machine']['load_average_1m']:.1f} "
              f"at the end), Python {report['machine']['python']}, numpy {report['machine']['numpy']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
