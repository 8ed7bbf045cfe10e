"""Retrieval on a turn: the agent's index (rebuilt from Redis when its knowledge version moved),
the question embedded, the best passages that fit the knowledge budget.

Costs nothing on an agent without knowledge (version 0, read in the turn's existing pipeline).
"""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread
import numpy as np

from backends.base import Excerpt
from backends.embedders.base import EmbeddingError
from chatspark.config import KnowledgeConfig
from chatspark.embeddings import EmbedderRouter
from chatspark.knowledge.documents import Passage
from chatspark.knowledge.index import Hit, IndexCache, KnowledgeIndex, select
from chatspark.store import Store
from chatspark.store.conversations import Citation
from chatspark.store.knowledge import SourceRecord, StoredChunk

log = logging.getLogger("chatspark.knowledge")

GROUNDING = (
    "Answer from the passages of the knowledge base below when they cover the question, and stay "
    "consistent with them. If they do not cover it, say exactly: {no_answer}\n\n{passages}"
)


class Grounding:
    """What a turn sends and reports: the passages as one system message, and their citations."""

    def __init__(self, hits: list[Hit], no_answer: str) -> None:
        self.hits = hits
        blocks = [
            f"[{n}] {h.passage.title or h.passage.source}" + (f" — {h.passage.heading}" if h.passage.heading else "")
            + f"\n{h.passage.text}"
            for n, h in enumerate(hits, start=1)
        ]
        self.message = GROUNDING.format(no_answer=no_answer, passages="\n\n".join(blocks)) if hits else ""
        self.citations = [
            Citation(training_id=h.passage.training_id, source=h.passage.source, title=h.passage.title,
                     url=h.passage.url, score=round(h.score, 4))
            for h in hits
        ]
        self.excerpts = tuple(Excerpt(h.passage.text, h.passage.title, h.score) for h in hits)


NONE = Grounding([], "")


class Retriever:
    def __init__(self, store: Store, embedders: EmbedderRouter, config: KnowledgeConfig) -> None:
        self.store = store
        self.embedders = embedders
        self.config = config
        self.cache = IndexCache(config.index_cache_bytes)
        self._building: dict[int, anyio.Lock] = {}

    async def ground(self, agent_id: int, version: int, question: str, no_answer: str, budget: int) -> Grounding:
        """The passages for `question` within `budget` tokens; none when the agent has no knowledge,
        nothing relevant was found, or the embedder failed (the turn then answers without)."""
        if version == 0:
            return NONE
        try:
            index = await self._index(agent_id, version)
            if not len(index):
                return NONE
            vector = (await self.embedders.embed([question]))[0]
            if vector.shape[0] != index.vectors.shape[1]:  # indexed by another embedder: lexical only
                vector = np.zeros(index.vectors.shape[1], dtype=np.float32)
        except EmbeddingError as exc:
            log.warning("knowledge not used for a turn of agent %d: %s", agent_id, exc)
            return NONE
        found = index.search(question, vector, self.config.top_k)
        if not found.relevant:
            return NONE
        return Grounding(select(found.hits, min(budget, self.config.max_knowledge_tokens)), no_answer)

    async def _index(self, agent_id: int, version: int) -> KnowledgeIndex:
        index = self.cache.get(str(agent_id), version)
        if index is not None:
            return index
        lock = self._building.setdefault(agent_id, anyio.Lock())
        async with lock:  # one build per agent at a time; the waiters find it cached
            index = self.cache.get(str(agent_id), version)
            if index is None:
                read_version, sources = await self.store.knowledge.live_chunks(agent_id)
                index = await anyio.to_thread.run_sync(_build, sources)
                self.cache.put(str(agent_id), read_version, index)
        return index


def _build(sources: list[tuple[SourceRecord, list[StoredChunk]]]) -> KnowledgeIndex:
    passages: list[Passage] = []
    vectors: list[np.ndarray] = []
    for record, chunks in sources:
        for n, c in enumerate(chunks):
            passages.append(Passage(
                id=f"{record.id}:{record.live}:{n}", training_id=record.id, source=record.source, text=c.text,
                title=c.title or record.title, url=c.url or record.url, heading=c.heading,
            ))
            vectors.append(np.frombuffer(c.vector, dtype=np.float32))
    if not passages:
        return KnowledgeIndex([], np.zeros((0, 1), dtype=np.float32))
    dims = max(len(v) for v in vectors)
    # Chunks embedded by another embedder (a config change) keep their lexical match only.
    matrix = np.stack([v if len(v) == dims else np.zeros(dims, dtype=np.float32) for v in vectors])
    return KnowledgeIndex(passages, matrix)
