"""One agent's in-memory hybrid index (BM25 over words, cosine over vectors, fused by rank) and the
per-process cache of those indexes, bounded by bytes and invalidated by the agent's knowledge version."""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence

import bm25s
import msgspec
import numpy as np

from chatspark.knowledge.documents import Passage
from chatspark.knowledge.words import terms
from chatspark.prompt import token_bound

# bm25s sets its logger to DEBUG and logs every index build; a replica builds indexes all day.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class Fusion(msgspec.Struct, frozen=True, kw_only=True):
    """How the two rankings are combined and when the best match is too weak to answer from.

    The defaults were tuned on the dev half of bench/retrieval's labelled set (its README has the
    numbers, and those of the held-out half). A weight of 0 turns a ranking off entirely, its
    threshold included (the bench's lexical-only and vector-only rows)."""

    # Reciprocal rank fusion: a passage scores Σ weight / (rrf_k + rank) over the rankings.
    rrf_k: int = 60
    vector_weight: float = 1.0
    # BM25 votes at a third of the vector's weight, and only for its strong matches: on help pages
    # a question's one common word ("order", "account") makes a confident-looking BM25 rank 1 that
    # is wrong, while a real keyword match (a product, an error code, a tax name) scores far above
    # the rest. So a lexical rank counts when its score is at least `lexical_floor` and within
    # `lexical_share` of the best score for the question; then it lifts a passage the vectors
    # placed in their top ~25 to the top.
    lexical_weight: float = 0.3
    lexical_floor: float = 2.0
    lexical_share: float = 0.8
    # ... and only for a passage holding at least this share of the question's terms, each weighted
    # by its IDF (a term no passage uses counts as the rarest). A question that shares no real word
    # with its answer often shares one incidental word with a wrong passage ("light", "order"): that
    # match covers little of the question, and the vectors decide alone. 0 turns the gate off.
    # Tuned on dev: 0.25 and 0.3 tied; 0.4 and up lose real keyword matches (bench README).
    lexical_coverage: float = 0.25
    candidates: int = 50  # taken from each ranking before fusing
    # The question is answerable when the best BM25 score or the best cosine over the whole index
    # clears its bar; below both, the caller answers with the agent's botNoAnswer. Chosen to turn
    # away at most 10% of the answerable dev questions: wordllama's cosines of paraphrases and of
    # off-topic questions overlap, so this catches only some unanswerable ones (bench README).
    min_bm25: float = 11.5
    min_cosine: float = 0.21


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    passage: Passage
    score: float  # the fused score over its maximum: 1.0 = ranked first by every ranking in use
    lexical_rank: int | None  # 1-based; None when BM25 did not count it (no match, not a strong one, or too little of the question)
    vector_rank: int | None
    bm25: float
    cosine: float


class Retrieval(msgspec.Struct, frozen=True, kw_only=True):
    hits: list[Hit]  # best first
    relevant: bool  # False: nothing in the index is close enough to answer from


class KnowledgeIndex:
    """Immutable once built; searched from the event loop (a search is a few milliseconds of numpy)."""

    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray, *, fusion: Fusion = Fusion()) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(passages):
            raise ValueError(f"{len(passages)} passages need a ({len(passages)}, d) array, got {vectors.shape}")
        self.passages = list(passages)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.fusion = fusion
        self._bm25: bm25s.BM25 | None = None
        corpus = [terms(_indexed_text(p)) for p in self.passages]
        if any(corpus):  # passages of stopwords only ("# A\nB.") have no lexical side (bm25s divides by 0)
            self._bm25 = bm25s.BM25(k1=1.2, b=0.75)
            self._bm25.index(corpus, create_empty_token=False, show_progress=False)
            # bm25s keeps a set of every term id for its own retrieve(), which we do not call.
            self._bm25.unique_token_ids_set = None
        self.nbytes = self._measure()

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query: str, query_vector: np.ndarray, top_k: int) -> Retrieval:
        if not self.passages:
            return Retrieval(hits=[], relevant=False)
        fusion = self.fusion
        bm25, term_ids, unknown_terms = self._bm25_scores(query)
        votes = bm25  # what BM25 may vote with: the scores of the passages covering enough of the question
        if fusion.lexical_weight > 0 and fusion.lexical_coverage > 0 and term_ids:
            rows = np.flatnonzero(bm25 >= max(fusion.lexical_floor, np.finfo(np.float32).tiny))  # the only ones that may vote
            covering = rows[self._coverage(rows, term_ids, unknown_terms) >= fusion.lexical_coverage]
            votes = np.zeros_like(bm25)
            votes[covering] = bm25[covering]
        cosine = self.vectors @ np.asarray(query_vector, dtype=np.float32)
        fused: dict[int, float] = {}
        lexical_ranks: dict[int, int] = {}
        vector_ranks: dict[int, int] = {}
        if fusion.lexical_weight > 0:
            strong = max(fusion.lexical_floor, fusion.lexical_share * float(votes.max()), np.finfo(np.float32).tiny)
            lexical_ranks = _ranks(votes, fusion.candidates, at_least=strong)
            for row, rank in lexical_ranks.items():
                fused[row] = fused.get(row, 0.0) + fusion.lexical_weight / (fusion.rrf_k + rank)
        if fusion.vector_weight > 0:
            vector_ranks = _ranks(cosine, fusion.candidates, at_least=None)
            for row, rank in vector_ranks.items():
                fused[row] = fused.get(row, 0.0) + fusion.vector_weight / (fusion.rrf_k + rank)
        best_possible = (fusion.lexical_weight + fusion.vector_weight) / (fusion.rrf_k + 1)
        # Ties (first in one ranking, absent from the other) go to the closer vector: deterministic.
        order = sorted(fused, key=lambda row: (-fused[row], -cosine[row]))[:top_k]
        hits = [
            Hit(
                passage=self.passages[row],
                score=round(fused[row] / best_possible, 4),
                lexical_rank=lexical_ranks.get(row),
                vector_rank=vector_ranks.get(row),
                bm25=float(bm25[row]),
                cosine=float(cosine[row]),
            )
            for row in order
        ]
        relevant = (fusion.lexical_weight > 0 and float(votes.max()) >= fusion.min_bm25) or (
            fusion.vector_weight > 0 and float(cosine.max()) >= fusion.min_cosine
        )
        return Retrieval(hits=hits, relevant=relevant)

    def _bm25_scores(self, query: str) -> tuple[np.ndarray, list[int], int]:
        """BM25 scores, the ids of the question's terms the index knows, and how many it does not."""
        if self._bm25 is None:
            return np.zeros(len(self.passages), dtype=np.float32), [], 0
        # Each distinct term once: a question that repeats a word does not mean it twice as much.
        query_terms = list(dict.fromkeys(terms(query)))
        ids = self._bm25.get_tokens_ids(query_terms)
        if not ids:
            return np.zeros(len(self.passages), dtype=np.float32), [], len(query_terms)
        return self._bm25.get_scores_from_ids(ids), ids, len(query_terms) - len(ids)

    def _coverage(self, rows: np.ndarray, term_ids: list[int], unknown_terms: int) -> np.ndarray:
        """For each row, the IDF-weighted share of the question's terms its passage holds; a term
        no passage holds weighs as the rarest. Reads the postings BM25 just read, but only looks up
        `rows` in them: bm25s keeps each term's passages sorted (it builds its CSC matrix by sorting
        (term, passage) pairs), so that is a binary search per row and term."""
        assert self._bm25 is not None
        count = len(self.passages)
        indptr, indices = self._bm25.scores["indptr"], self._bm25.scores["indices"]
        held = np.zeros(len(rows), dtype=np.float64)
        total = unknown_terms * _idf(count, 0)
        rows = rows.astype(indices.dtype)  # searchsorted would otherwise convert (copy) every posting list
        for term in term_ids:
            postings = indices[int(indptr[term]):int(indptr[term + 1])]
            weight = _idf(count, len(postings))
            at = np.minimum(np.searchsorted(postings, rows), len(postings) - 1)
            held += weight * (postings[at] == rows)
            total += weight
        return held / total

    def _measure(self) -> int:
        """Approximate bytes held: the arrays exactly, Python objects by their shallow sizes."""
        total = self.vectors.nbytes + sys.getsizeof(self.passages)
        for passage in self.passages:
            total += sys.getsizeof(passage) + sum(
                sys.getsizeof(value) for value in (passage.id, passage.source, passage.text, passage.title, passage.url, passage.heading) if value is not None
            )
        if self._bm25 is not None:
            total += sum(array.nbytes for array in (self._bm25.scores["data"], self._bm25.scores["indices"], self._bm25.scores["indptr"]))
            vocabulary = self._bm25.vocab_dict
            total += sys.getsizeof(vocabulary) + sum(sys.getsizeof(term) + 28 for term in vocabulary)
        return total


def select(hits: Sequence[Hit], budget_tokens: int) -> list[Hit]:
    """The best hits whose texts fit the budget together, in rank order; one too large for the room
    left is skipped, so a shorter passage further down may still be sent."""
    kept: list[Hit] = []
    used = 0
    for hit in hits:
        cost = token_bound(hit.passage.text)
        if used + cost <= budget_tokens:
            kept.append(hit)
            used += cost
    return kept


class IndexCache:
    """Per-process LRU of agents' indexes, bounded by their `nbytes`. Each entry carries the agent's
    knowledge version (a counter in Redis bumped by every change), so a replica never serves an
    index older than what another replica has trained. Calls are synchronous and take a lock:
    safe from the event loop and from the worker threads that build indexes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, tuple[int, KnowledgeIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, agent_id: str, version: int) -> KnowledgeIndex | None:
        with self._lock:
            entry = self._entries.get(agent_id)
            if entry is None:
                return None
            if entry[0] != version:
                # Stale for good: versions only grow, so free its memory now.
                self._drop(agent_id)
                return None
            self._entries.move_to_end(agent_id)
            return entry[1]

    def put(self, agent_id: str, version: int, index: KnowledgeIndex) -> bool:
        """Keeps the index, evicting the least recently used beyond the bound. An index larger than
        the whole bound is not kept (False): the caller uses it for its turn and lets it go."""
        with self._lock:
            if agent_id in self._entries:
                if self._entries[agent_id][0] > version:
                    return False  # a slower build of an older version finished last
                self._drop(agent_id)
            if index.nbytes > self.max_bytes:
                return False
            self._entries[agent_id] = (version, index)
            self.nbytes += index.nbytes
            while self.nbytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            return True

    def discard(self, agent_id: str) -> None:
        with self._lock:
            if agent_id in self._entries:
                self._drop(agent_id)

    def _drop(self, agent_id: str) -> None:
        _, index = self._entries.pop(agent_id)
        self.nbytes -= index.nbytes


def _indexed_text(passage: Passage) -> str:
    # The page title and heading often carry the words a question uses ("Refunds", "Two-factor").
    return " ".join(part for part in (passage.title, passage.heading, passage.text) if part)


def _idf(passages: int, holding: int) -> float:
    # The Lucene IDF that bm25s scores with (its default method).
    return math.log(1 + (passages - holding + 0.5) / (holding + 0.5))


def _ranks(scores: np.ndarray, count: int, *, at_least: float | None) -> dict[int, int]:
    """Row → 1-based rank of the `count` highest scores (only those ≥ `at_least`, if given)."""
    rows = np.arange(len(scores)) if at_least is None else np.flatnonzero(scores >= at_least)
    if len(rows) > count:
        rows = rows[np.argpartition(-scores[rows], count - 1)[:count]]
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return {int(row): rank for rank, row in enumerate(rows, start=1)}
