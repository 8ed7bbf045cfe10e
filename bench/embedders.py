"""`python -m bench.embedders`: offline embedder candidates compared on the labelled paraphrase set
(bench/retrieval_pairs.py): top-1 and recall@5 by cosine, embedding throughput, one-query latency,
load time and memory. Written up in bench/retrieval_embedders.md.

Each candidate runs in a fresh interpreter, so its load time and memory are its own; the parent
prints a Markdown table (and `--json` the raw numbers). No network is used by any candidate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence

import numpy as np

from bench.retrieval_pairs import DISTRACTORS, PAIRS

CANDIDATES = (
    "wordllama-256",
    "wordllama-128",
    "wordllama-64",
    "char-ngrams-256",
    "char-ngrams-1024",
    "bm25",
)
THROUGHPUT_TEXTS = 2000
LATENCY_CALLS = 200


def _rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class HashedCharNgrams:
    """The alternative that needs no weights at all: character 3–5-grams of each word, hashed with a
    sign into `dimensions` buckets, sublinear counts, L2-normalised. Subword overlap, not meaning."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, float] = {}
            for word in re.findall(r"\w+", text.lower()):
                padded = f" {word} "
                for n in (3, 4, 5):
                    for i in range(max(1, len(padded) - n + 1)):
                        h = zlib.crc32(padded[i:i + n].encode())
                        bucket = h % self.dimensions
                        counts[bucket] = counts.get(bucket, 0.0) + (1.0 if h & 0x80000000 else -1.0)
            for bucket, value in counts.items():
                out[row, bucket] = np.sign(value) * np.log1p(abs(value))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


def _quality(ranked: np.ndarray) -> dict[str, float]:
    """`ranked[q]`: passage indexes best first; the right passage for query q is passage q."""
    gold = np.arange(len(ranked))
    top1 = float(np.mean(ranked[:, 0] == gold))
    recall5 = float(np.mean([g in r[:5] for g, r in zip(gold, ranked, strict=True)]))
    mrr = float(np.mean([1 / (1 + list(r).index(g)) for g, r in zip(gold, ranked, strict=True)]))
    return {"top1": top1, "recall5": recall5, "mrr": mrr}


def _throughput_texts() -> list[str]:
    """Chunk-sized texts (~800 bytes, like an 800-token-bound chunk's prose), all different."""
    passages = [p for _, p in PAIRS] + DISTRACTORS
    texts = []
    for n in range(THROUGHPUT_TEXTS):
        parts, size, k = [], 0, n
        while size < 800:
            part = passages[k % len(passages)]
            parts.append(part)
            size += len(part) + 1
            k = k * 7 + 3
        texts.append(f"{n} " + " ".join(parts))
    return texts


async def _measure_embedder(name: str) -> dict[str, object]:
    rss_before = _rss_mb()
    started = time.perf_counter()
    if name.startswith("wordllama-"):
        from backends.embedders import load_embedder
        from backends.embedders.base import EmbedderSettings

        embedder = load_embedder(EmbedderSettings(name=name, dimensions=int(name.split("-")[1])))
    else:
        embedder = HashedCharNgrams(int(name.split("-")[2]))
    await embedder.embed(["warm up"])  # the model loads on first use
    load_seconds = time.perf_counter() - started
    rss_loaded = _rss_mb()

    queries = [q for q, _ in PAIRS]
    passages = [p for _, p in PAIRS] + DISTRACTORS
    scores = (await embedder.embed(queries)) @ (await embedder.embed(passages)).T
    quality = _quality(np.argsort(-scores, axis=1, kind="stable"))

    texts = _throughput_texts()
    started = time.perf_counter()
    await embedder.embed(texts)
    throughput = len(texts) / (time.perf_counter() - started)

    latencies = []
    for n in range(LATENCY_CALLS):
        started = time.perf_counter()
        await embedder.embed([queries[n % len(queries)]])
        latencies.append(time.perf_counter() - started)
    return {
        "candidate": name, **quality, "texts_per_s": throughput,
        "query_ms_p50": statistics.median(latencies) * 1000,
        "load_s": load_seconds, "rss_mb_delta": rss_loaded - rss_before, "rss_mb_peak": _rss_mb("VmHWM"),
    }


def _measure_bm25() -> dict[str, object]:
    """The lexical reference (the index's other half), not an embedder: what words alone find."""
    rss_before = _rss_mb()
    started = time.perf_counter()
    import bm25s

    passages = [p for _, p in PAIRS] + DISTRACTORS
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(passages, show_progress=False), show_progress=False)
    load_seconds = time.perf_counter() - started
    queries = bm25s.tokenize([q for q, _ in PAIRS], show_progress=False)
    ranked, _ = retriever.retrieve(queries, k=len(passages), show_progress=False)
    return {"candidate": "bm25", **_quality(np.asarray(ranked)), "texts_per_s": None, "query_ms_p50": None,
            "load_s": load_seconds, "rss_mb_delta": _rss_mb() - rss_before, "rss_mb_peak": _rss_mb("VmHWM")}


def _run_child(name: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "bench.embedders", "--candidate", name],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, object]]) -> str:
    def fmt(value: object, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    lines = ["| candidate | top-1 | recall@5 | MRR | texts/s (≈800 B) | one query p50 ms | load s | RSS +MB | RSS peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['candidate']} | {fmt(r['top1'], '.0%')} | {fmt(r['recall5'], '.0%')} | {fmt(r['mrr'], '.2f')} "
            f"| {fmt(r['texts_per_s'], ',.0f')} | {fmt(r['query_ms_p50'], '.2f')} | {fmt(r['load_s'], '.2f')} "
            f"| {fmt(r['rss_mb_delta'], '.0f')} | {fmt(r['rss_mb_peak'], '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", choices=CANDIDATES, help="measure one candidate here (a child run)")
    parser.add_argument("--only", help="comma-separated candidates (default: all)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers too")
    args = parser.parse_args(argv)
    if args.candidate:
        row = _measure_bm25() if args.candidate == "bm25" else asyncio.run(_measure_embedder(args.candidate))
        print(json.dumps(row))
        return 0
    names = args.only.split(",") if args.only else list(CANDIDATES)
    rows = [_run_child(name) for name in names]
    print(f"{len(PAIRS)} questions, {len(PAIRS) + len(DISTRACTORS)} passages ({len(DISTRACTORS)} answer none)\n")
    print(_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
