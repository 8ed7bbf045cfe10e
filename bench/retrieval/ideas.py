"""`python -m bench.retrieval.ideas`: the retrieval ideas tried against the shipped hybrid, each
measured on dev (where it would be tuned) and test (held out). Kept: the lexical coverage gate (it
is in `Fusion`). The others are here so that anyone can re-run them before trying them again.

Each idea is one of three shapes: a `Fusion` setting; a change to what BM25 indexes; or a score
array per question — alone, blended with the vectors (z-scored, weight picked on dev), or reranking
the hybrid's top 20. Token-level ideas use wordllama's own token vectors and tokenizer (the model
the offline embedder loads), so they are computable from a chunk's text at index build time."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from functools import cache

import msgspec
import numpy as np

from backends.embedders.wordllama import embed_batch, load_model
from bench.retrieval import corpus, quality
from bench.retrieval.embedding import passage_text
from chatspark.knowledge.index import Fusion, KnowledgeIndex
from chatspark.knowledge.words import STOPWORDS

SPLITS = ("dev", "test")
Scores = Callable[[int, quality.Question], np.ndarray]  # question number, question → one score per passage


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-9)


def z(scores: np.ndarray) -> np.ndarray:
    spread = scores.std()
    return (scores - scores.mean()) / spread if spread > 0 else scores * 0


@cache
def model():  # type: ignore[no-untyped-def]
    return load_model("l2_supercat", 256)


@cache
def passage_tokens(agent: str) -> list[np.ndarray]:
    texts = [passage_text(p) for p in quality.agents()[agent].passages]
    return [np.asarray(e.ids, dtype=np.intp) for e in model().tokenizer.encode_batch(texts, add_special_tokens=False)]


@cache
def question_tokens() -> list[np.ndarray]:
    texts = [q.question for q in quality.questions()]
    return [np.asarray(e.ids, dtype=np.intp) for e in model().tokenizer.encode_batch(texts, add_special_tokens=False)]


@cache
def token_idf(agent: str) -> dict[int, float]:
    held: dict[int, int] = {}
    for ids in passage_tokens(agent):
        for token in set(ids.tolist()):
            held[token] = held.get(token, 0) + 1
    count = len(passage_tokens(agent))
    return {token: math.log(1 + (count - df + 0.5) / (df + 0.5)) for token, df in held.items()} | {-1: math.log(1 + (count + 0.5) / 0.5)}


def idf_of(agent: str, token: int) -> float:
    table = token_idf(agent)
    return table.get(token, table[-1])


@cache
def stop_tokens() -> frozenset[int]:
    """Tokens that are a stopword or punctuation once the SentencePiece space mark is dropped."""
    pieces = {token: piece.replace("\u2581", "").lower() for piece, token in model().tokenizer.get_vocab().items()}
    return frozenset(t for t, piece in pieces.items() if piece in STOPWORDS or not re.search(r"\w", piece))


def idf_mean(agent: str, ids: np.ndarray) -> np.ndarray:
    weights = np.array([math.sqrt(idf_of(agent, t)) for t in ids])
    return unit((model().vectors[ids] * weights[:, None]).sum(0))


@cache
def idf_passage_vectors(agent: str) -> np.ndarray:
    return np.stack([idf_mean(agent, ids) for ids in passage_tokens(agent)])


def idf_weighted_vectors(n: int, q: quality.Question) -> np.ndarray:
    """Token vectors averaged with √IDF weights (over the agent's passages), passages and question alike."""
    return idf_passage_vectors(q.agent) @ idf_mean(q.agent, question_tokens()[n])


@cache
def unit_token_vectors() -> np.ndarray:
    return unit(model().vectors)


def maxsim(n: int, q: quality.Question) -> np.ndarray:
    """ColBERT-like with static vectors: per question token (stopwords out), the best cosine over the
    passage's tokens, averaged with IDF weights."""
    ids = [t for t in question_tokens()[n] if t not in stop_tokens()] or list(question_tokens()[n])
    weights = np.array([idf_of(q.agent, t) for t in ids])
    asked = unit_token_vectors()[ids]
    return np.array([float(weights @ (unit_token_vectors()[p] @ asked.T).max(0)) / weights.sum() for p in passage_tokens(q.agent)])


@cache
def sentence_vectors(agent: str) -> list[np.ndarray]:
    found = []
    for p in quality.agents()[agent].passages:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", p.text) if s.strip()]
        found.append(unit(embed_batch(model(), [f"{p.heading}\n{s}" for s in sentences])))
    return found


def sentence_max(n: int, q: quality.Question) -> np.ndarray:
    """Each passage's best sentence (with its heading), embedded on its own."""
    vector = quality.question_vectors()[n]
    return np.array([float((sentences @ vector).max()) for sentences in sentence_vectors(q.agent)])


@cache
def heading_vectors(agent: str) -> np.ndarray:
    return unit(embed_batch(model(), [f"{p.title}\n{p.heading}" for p in quality.agents()[agent].passages]))


def heading_cosine(n: int, q: quality.Question) -> np.ndarray:
    return heading_vectors(q.agent) @ quality.question_vectors()[n]


@cache
def content_question_vectors() -> np.ndarray:
    """Questions with stopwords and question words removed before embedding."""
    kept = [" ".join(w for w in re.findall(r"[\w'&-]+", q.question) if w.lower() not in STOPWORDS) or q.question for q in quality.questions()]
    return unit(embed_batch(model(), kept))


def cosine(n: int, q: quality.Question) -> np.ndarray:
    return quality.agents()[q.agent].vectors @ quality.question_vectors()[n]


@cache
def indexes(fusion: Fusion) -> dict[str, KnowledgeIndex]:
    return {name: KnowledgeIndex(agent.passages, agent.vectors, fusion=fusion) for name, agent in quality.agents().items()}


def bm25(n: int, q: quality.Question) -> np.ndarray:
    return indexes(Fusion())[q.agent]._bm25_scores(q.question)[0]


def rank_metrics(order_of: Callable[[int, quality.Question], np.ndarray], split: str) -> tuple[float, float, float]:
    """top-1, recall@5, MRR@10 of a ranking (passage rows, best first) over the answerable questions."""
    top1 = recall5 = mrr = answerable = 0.0
    for n, q in enumerate(quality.questions()):
        if q.expected == "none" or q.split != split:
            continue
        answerable += 1
        passages = quality.agents()[q.agent].passages
        rank = next((r for r, row in enumerate(order_of(n, q)[:10], start=1) if corpus.answers(passages[row].id, q.expected)), None)
        if rank:
            top1 += rank == 1
            recall5 += rank <= 5
            mrr += 1 / rank
    return top1 / answerable, recall5 / answerable, mrr / answerable


def ranked(scores: Scores) -> Callable[[int, quality.Question], np.ndarray]:
    return lambda n, q: np.argsort(-scores(n, q), kind="stable")


@cache
def hybrid_top(n: int, fusion: Fusion = Fusion(), depth: int = 20) -> tuple[np.ndarray, np.ndarray]:
    q = quality.questions()[n]
    rows = {p.id: row for row, p in enumerate(quality.agents()[q.agent].passages)}
    hits = indexes(fusion)[q.agent].search(q.question, quality.question_vectors()[n], top_k=depth).hits
    return np.array([rows[h.passage.id] for h in hits]), np.array([h.score for h in hits])


def reranked(feature: Scores, weight: float) -> Callable[[int, quality.Question], np.ndarray]:
    """The hybrid's top 20, reordered by fused score + weight × the feature z-scored over those 20."""
    def order(n: int, q: quality.Question) -> np.ndarray:
        rows, fused = hybrid_top(n)
        return rows[np.argsort(-(fused + weight * z(feature(n, q)[rows])), kind="stable")]
    return order


def blended(feature: Scores, weight: float) -> Callable[[int, quality.Question], np.ndarray]:
    """Vectors alone, z-scored, plus weight × the feature z-scored (over all the agent's passages)."""
    return ranked(lambda n, q: z(cosine(n, q)) + weight * z(feature(n, q)))


def convex(weight: float) -> Callable[[int, quality.Question], np.ndarray]:
    """Min-max normalised BM25 and cosine, weight × BM25 + (1 - weight) × cosine: magnitudes kept."""
    def minmax(x: np.ndarray) -> np.ndarray:
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else x * 0
    return ranked(lambda n, q: weight * minmax(bm25(n, q)) + (1 - weight) * minmax(cosine(n, q)))


def best_on_dev(make: Callable[[float], Callable[[int, quality.Question], np.ndarray]], weights: tuple[float, ...]) -> tuple[float, dict[str, tuple[float, float, float]]]:
    """The weight with the best dev top-1 (then MRR), and its dev and test metrics."""
    scored = [(rank_metrics(make(w), "dev"), w) for w in weights]
    (dev, weight) = max(scored, key=lambda item: (item[0][0], item[0][2]))
    return weight, {"dev": dev, "test": rank_metrics(make(weight), "test")}


def fusion_metrics(fusion: Fusion) -> dict[str, tuple[float, float, float]]:
    found = {}
    for split in SPLITS:
        m = quality.evaluate(fusion, split)
        found[split] = (m["top1"], m["recall@5"], m["mrr@10"])
    return found


def boosted_headings() -> dict[str, tuple[float, float, float]]:
    """BM25 with the page title and heading indexed twice (the vectors unchanged)."""
    real = quality.agents()
    boosted = {
        name: quality.Agent([msgspec.structs.replace(p, heading=f"{p.heading} {p.title} {p.heading}") for p in agent.passages], agent.vectors)
        for name, agent in real.items()
    }
    original = quality.agents
    quality.agents = lambda: boosted  # type: ignore[assignment]
    try:
        return fusion_metrics(Fusion())
    finally:
        quality.agents = original  # type: ignore[assignment]


def rows() -> list[tuple[str, str, dict[str, tuple[float, float, float]]]]:
    weights = (0.05, 0.1, 0.25, 0.5, 1.0)
    table: list[tuple[str, str, dict[str, tuple[float, float, float]]]] = []
    table.append(("shipped hybrid (RRF, gated BM25, coverage gate)", "", fusion_metrics(Fusion())))
    table.append(("same without the coverage gate (before)", "lexical_coverage 0", fusion_metrics(Fusion(lexical_coverage=0.0))))
    table.append(("vectors alone", "", {s: rank_metrics(ranked(cosine), s) for s in SPLITS}))
    for share in (0.2, 0.3, 0.4):
        table.append((f"coverage gate at {share}", "", fusion_metrics(Fusion(lexical_coverage=share))))
    w, m = best_on_dev(convex, (0.1, 0.2, 0.3, 0.4, 0.5))
    table.append(("convex min-max BM25 + cosine instead of RRF", f"BM25 weight {w}", m))
    table.append(("title and heading boosted ×2 in BM25", "", boosted_headings()))
    table.append(("question stopwords removed before embedding", "", {s: rank_metrics(ranked(lambda n, q: quality.agents()[q.agent].vectors @ content_question_vectors()[n]), s) for s in SPLITS}))
    table.append(("√IDF-weighted token mean (vectors alone)", "", {s: rank_metrics(ranked(idf_weighted_vectors), s) for s in SPLITS}))
    table.append(("MaxSim alone (static token vectors)", "", {s: rank_metrics(ranked(maxsim), s) for s in SPLITS}))
    table.append(("sentence max alone", "", {s: rank_metrics(ranked(sentence_max), s) for s in SPLITS}))
    for name, feature in (("MaxSim", maxsim), ("sentence max", sentence_max), ("√IDF-weighted mean", idf_weighted_vectors), ("title+heading vector", heading_cosine)):
        w, m = best_on_dev(lambda weight, feature=feature: reranked(feature, weight), (0.02, 0.05, 0.1, 0.2))
        table.append((f"hybrid top 20 reranked by {name}", f"weight {w}", m))
        w, m = best_on_dev(lambda weight, feature=feature: blended(feature, weight), weights)
        table.append((f"vectors + {name} (z-scored blend)", f"weight {w}", m))
    return table


def main() -> int:
    print("| idea | setting (picked on dev) | dev top-1 | dev R@5 | dev MRR | test top-1 | test R@5 | test MRR |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, setting, m in rows():
        print(f"| {name} | {setting} | " + " | ".join(f"{v:.3f}" for split in SPLITS for v in m[split]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
