"""Retrieval quality on the labelled set: each question is asked of its own company's index (one
agent each), as a turn would ask it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import msgspec
import numpy as np

from bench.retrieval import corpus
from bench.retrieval.embedding import embed, passage_text
from chatspark.knowledge.documents import Passage
from chatspark.knowledge.index import Fusion, KnowledgeIndex
from chatspark.knowledge.words import terms

QUESTIONS = Path(__file__).parent / "questions.json"
MODES = {
    # Plain BM25: every passage it scores is ranked, not only its strong matches. Its no-answer bar
    # is chosen like the hybrid's (at most 10% of answerable dev questions turned away).
    "lexical": {"vector_weight": 0.0, "lexical_weight": 1.0, "lexical_floor": 0.0, "lexical_share": 0.0, "lexical_coverage": 0.0, "min_bm25": 1.5},
    "vector": {"lexical_weight": 0.0},
    "hybrid": {},
}


class Question(msgspec.Struct, frozen=True):
    agent: str
    question: str
    expected: str  # "<company>/<page>#<section>", "<company>/<page>", or "none"
    split: str  # "dev" (thresholds and weights were tuned on it) or "test" (held out)


@dataclass(frozen=True)
class Agent:
    passages: list[Passage]
    vectors: np.ndarray


@cache
def questions() -> tuple[Question, ...]:
    return tuple(msgspec.json.decode(QUESTIONS.read_bytes(), type=list[Question]))


@cache
def agents() -> dict[str, Agent]:
    found = {}
    for company in corpus.companies():
        passages = corpus.passages(company)
        found[company] = Agent(passages, embed([passage_text(p) for p in passages]))
    return found


@cache
def question_vectors() -> np.ndarray:
    return embed([q.question for q in questions()])


def evaluate(fusion: Fusion, split: str | None = None, only: set[int] | None = None) -> dict[str, float]:
    """top-1, recall@5 and MRR@10 over the answerable questions; precision and recall of the
    no-answer signal over all (a "none" question is a positive; `relevant=False` predicts one)."""
    indexes = {name: KnowledgeIndex(agent.passages, agent.vectors, fusion=fusion) for name, agent in agents().items()}
    top1 = recall5 = mrr = answerable = 0.0
    said_none = right_none = truly_none = 0
    for n, (question, vector) in enumerate(zip(questions(), question_vectors(), strict=True)):
        if (split is not None and question.split != split) or (only is not None and n not in only):
            continue
        retrieval = indexes[question.agent].search(question.question, vector, top_k=10)
        if not retrieval.relevant:
            said_none += 1
        if question.expected == "none":
            truly_none += 1
            right_none += not retrieval.relevant
            continue
        answerable += 1
        ranks = [n for n, hit in enumerate(retrieval.hits, start=1) if corpus.answers(hit.passage.id, question.expected)]
        if ranks:
            top1 += ranks[0] == 1
            recall5 += ranks[0] <= 5
            mrr += 1 / ranks[0]
    return {
        "questions": answerable + truly_none,
        "top1": top1 / answerable if answerable else 0.0,
        "recall@5": recall5 / answerable if answerable else 0.0,
        "mrr@10": mrr / answerable if answerable else 0.0,
        "no_answer_precision": right_none / said_none if said_none else 1.0,
        "no_answer_recall": right_none / truly_none if truly_none else 1.0,
    }


def evaluate_modes(fusion: Fusion, split: str | None) -> dict[str, dict[str, float]]:
    return {mode: evaluate(msgspec.structs.replace(fusion, **change), split) for mode, change in MODES.items()}


def describe_set() -> dict[str, object]:
    """The set's shape, including how many questions share no index term with their passage."""
    qs = questions()
    answerable = [q for q in qs if q.expected != "none"]
    disjoint = 0
    for question in answerable:
        words: set[str] = set()
        for passage in agents()[question.agent].passages:
            if corpus.answers(passage.id, question.expected):
                words |= set(terms(" ".join(p for p in (passage.title, passage.heading, passage.text) if p)))
        disjoint += not (set(terms(question.question)) & words)
    return {
        "companies": len(agents()),
        "passages": sum(len(agent.passages) for agent in agents().values()),
        "questions": len(qs),
        "answerable": len(answerable),
        "unanswerable": len(qs) - len(answerable),
        "no_shared_content_word": disjoint,
        "held_out": sum(q.split == "test" for q in qs),
    }


def misses(fusion: Fusion, split: str | None = None) -> list[dict[str, object]]:
    """The questions the hybrid gets wrong, for reading (`--misses`)."""
    indexes = {name: KnowledgeIndex(agent.passages, agent.vectors, fusion=fusion) for name, agent in agents().items()}
    wrong = []
    for question, vector in zip(questions(), question_vectors(), strict=True):
        if split is not None and question.split != split:
            continue
        retrieval = indexes[question.agent].search(question.question, vector, top_k=5)
        found = question.expected == "none" or any(corpus.answers(h.passage.id, question.expected) for h in retrieval.hits[:1])
        if not found or retrieval.relevant != (question.expected != "none"):
            best = retrieval.hits[0] if retrieval.hits else None
            wrong.append({
                "question": question.question,
                "expected": question.expected,
                "got": best.passage.id if best else None,
                "relevant": retrieval.relevant,
                "bm25": round(max((h.bm25 for h in retrieval.hits), default=0.0), 2),
                "cosine": round(max((h.cosine for h in retrieval.hits), default=0.0), 3),
            })
    return wrong


if __name__ == "__main__":
    print(json.dumps(describe_set(), indent=1))
