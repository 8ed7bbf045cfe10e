"""Latency, memory and build time of one agent's index at 1k, 10k and 100k passages.

Each size runs in a child process of its own (`python -m bench.retrieval.scale N`), so its RSS is
that index's and nothing left over from a bigger one. Passages are synthetic: ~150 words drawn
with a Zipf law from the real corpus's vocabulary, so BM25's posting lists have realistic lengths;
their vectors are random unit vectors (the dot product costs the same whatever the values), so
embedding them is not timed here. Queries are the labelled questions, their vectors computed
before the clock starts."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench.retrieval import corpus
from bench.retrieval.embedding import embed
from bench.retrieval.quality import questions
from chatspark.knowledge.documents import Passage
from chatspark.knowledge.index import Fusion, KnowledgeIndex
from chatspark.knowledge.words import WORD

SIZES = (1_000, 10_000, 100_000)
SEARCHES = 400
WORDS_PER_PASSAGE = 150


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synthetic(count: int, seed: int = 7) -> tuple[list[Passage], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocabulary = sorted({w.lower() for c in corpus.companies() for p in corpus.passages(c) for w in WORD.findall(p.text)})
    rng.shuffle(vocabulary)  # which words are frequent is random, not alphabetical
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    drawn = rng.choice(len(vocabulary), size=(count, WORDS_PER_PASSAGE), p=weights / weights.sum())
    passages = [
        Passage(id=f"s:{n}", training_id=1, source="synthetic", text=" ".join(vocabulary[w] for w in row), title=f"Page {n // 5}", heading=f"Section {n}")
        for n, row in enumerate(drawn)
    ]
    vectors = rng.standard_normal((count, 256), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return passages, vectors


def measure(count: int) -> dict[str, float]:
    asked = [q.question for q in questions()]
    query_vectors = embed(asked)
    gc.collect()
    before = rss_bytes()  # so the texts and vectors the index holds are counted too
    passages, vectors = synthetic(count)
    started = time.perf_counter()
    index = KnowledgeIndex(passages, vectors)
    build = time.perf_counter() - started
    del passages, vectors  # the index holds its own references: what stays is what it costs
    gc.collect()
    gc.collect()
    for n in range(20):  # warm caches and the stemmer's memo
        index.search(asked[n], query_vectors[n], top_k=5)
    timings = []
    for n in range(SEARCHES):
        at = n % len(asked)
        started = time.perf_counter()
        index.search(asked[at], query_vectors[at], top_k=5)
        timings.append(time.perf_counter() - started)
    ms = np.array(timings) * 1000
    return {
        "passages": count,
        "search_p50_ms": float(np.percentile(ms, 50)),
        "search_p99_ms": float(np.percentile(ms, 99)),
        "build_s": build,
        "build_s_per_1k": build / count * 1000,
        "index_rss_mb": (rss_bytes() - before) / 2**20,
        "index_nbytes_mb": index.nbytes / 2**20,
        "process_rss_mb": rss_bytes() / 2**20,
    }


def query_embedding() -> dict[str, float]:
    asked = [q.question for q in questions()]
    embed(asked[:20])
    timings = []
    for n in range(SEARCHES):
        started = time.perf_counter()
        embed([asked[n % len(asked)]])
        timings.append(time.perf_counter() - started)
    ms = np.array(timings) * 1000
    return {"embed_p50_ms": float(np.percentile(ms, 50)), "embed_p99_ms": float(np.percentile(ms, 99))}


def coverage_cost(count: int, blocks: int = 10, per_block: int = 200) -> dict[str, float]:
    """CPU time per search with the lexical coverage gate (the default `Fusion`) and without it, in
    alternating blocks on the same index, so both see the same machine load."""
    asked = [q.question for q in questions()]
    query_vectors = embed(asked)
    index = KnowledgeIndex(*synthetic(count))
    settings = {"gate": Fusion(), "no gate": Fusion(lexical_coverage=0.0)}
    spent = dict.fromkeys(settings, 0.0)
    for block in range(blocks * 2):
        name = list(settings)[block % 2]
        index.fusion = settings[name]
        started = time.process_time()
        for n in range(per_block):
            at = (block * per_block + n) % len(asked)
            index.search(asked[at], query_vectors[at], top_k=5)
        spent[name] += time.process_time() - started
    per_search = {name: seconds / (blocks * per_block) * 1e6 for name, seconds in spent.items()}
    return {"passages": count, "gate_us": per_search["gate"], "no_gate_us": per_search["no gate"],
            "added_us": per_search["gate"] - per_search["no gate"]}


def run(count: int, blas_threads: str = "1") -> dict[str, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": blas_threads}
    if blas_threads == "default":
        env.pop("OPENBLAS_NUM_THREADS")
    done = subprocess.run([sys.executable, "-m", "bench.retrieval.scale", str(count)], env=env, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout) | {"blas_threads": blas_threads}


if __name__ == "__main__":
    # `python -m bench.retrieval.scale N` measures one size; `... N --coverage-cost` the gate's CPU.
    size = int(sys.argv[1])
    print(json.dumps(coverage_cost(size) if "--coverage-cost" in sys.argv else measure(size)))
