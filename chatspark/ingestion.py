"""The ingestion worker every replica runs: training jobs from the Redis stream → text → chunks →
vectors → the source's new generation, swapped in when complete.

Nothing accepted is lost: a job leaves the stream only once its source is completed or failed; a
job whose replica died (unacknowledged, idle past `claim_idle_seconds`) is taken over by another
(XAUTOCLAIM); a running job keeps its claim fresh. A retried job writes the same chunks under the
same numbers (chunking is deterministic), so it never indexes a chunk twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

import anyio
import anyio.to_thread
import numpy as np

from chatspark import metrics
from chatspark.clock import now_ms
from chatspark.config import KnowledgeConfig
from chatspark.embeddings import EmbedderRouter
from chatspark.knowledge.chunking import chunk
from chatspark.knowledge.documents import Chunk, Document
from chatspark.store import Store
from chatspark.store.errors import StoreUnavailable
from chatspark.store.knowledge import Job, SourceRecord, StoredChunk

log = logging.getLogger("chatspark.ingestion")

MAX_DELIVERIES = 5  # a job that killed its worker this often is failed, not retried forever
EARLY_WAIT_SECONDS = 30.0  # a job may arrive before its source's record: wait this long for it
WRITE_BATCH = 64


class IngestionFailed(Exception):
    """The source cannot be indexed; the message is shown to users as the source's `error`."""


class Ingestion:
    def __init__(self, store: Store, embedders: EmbedderRouter, config: KnowledgeConfig) -> None:
        self.store = store
        self.embedders = embedders
        self.config = config
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._running: dict[str, Job] = {}

    async def run(self) -> None:
        """Forever (cancelled at shutdown: an unfinished job is taken over by another replica)."""
        while True:
            try:
                await self.store.knowledge.ensure_group()
                break
            except StoreUnavailable:
                await anyio.sleep(1)
        idle_ms = int(self.config.claim_idle_seconds * 1000)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._keep_claims)
            next_sweep = 0.0
            while True:
                free = self.config.worker_concurrency - len(self._running)
                if free <= 0:
                    await anyio.sleep(0.05)
                    continue
                try:
                    jobs = []
                    if time.monotonic() >= next_sweep:
                        jobs = await self.store.knowledge.orphaned_jobs(self.consumer, idle_ms, free)
                        next_sweep = time.monotonic() + self.config.claim_idle_seconds / 3
                    if not jobs:
                        jobs = await self.store.knowledge.next_jobs(self.consumer, free, block_ms=1000)
                except StoreUnavailable:
                    await anyio.sleep(1)
                    continue
                for job in jobs:
                    self._running[job.entry] = job
                    tasks.start_soon(self._run, job)

    async def _keep_claims(self) -> None:
        while True:
            await anyio.sleep(self.config.claim_idle_seconds / 3)
            try:
                await self.store.knowledge.keep_claimed(self.consumer, list(self._running))
            except StoreUnavailable:
                pass

    async def _run(self, job: Job) -> None:
        knowledge = self.store.knowledge
        finished = True
        started = time.monotonic()
        try:
            if job.deliveries > MAX_DELIVERIES:
                await knowledge.fail(job, "Indexing this source failed repeatedly.", now_ms())
                metrics.TRAINING_JOBS.labels("failed").inc()
                return
            if not await self._started(job):
                return
            record = await knowledge.get(job.agent_id, job.training_id)
            if record is None:
                return
            try:
                documents = await self._documents(job, record)
                count, title = await self._index(job, documents)
            except IngestionFailed as failure:
                await knowledge.fail(job, str(failure), now_ms())
                metrics.TRAINING_JOBS.labels("failed").inc()
                log.info("training source %d of agent %d failed: %s", job.training_id, job.agent_id, failure)
                return
            if await knowledge.complete(job, title, count, now_ms()):
                metrics.training_completed(started)
                log.info("training source %d of agent %d: %d chunks", job.training_id, job.agent_id, count)
        except StoreUnavailable:
            finished = False  # left unacknowledged: taken over (here or elsewhere) once idle
            metrics.TRAINING_JOBS.labels("paused").inc()
            log.warning("ingestion job %s paused: the store is unreachable", job.entry)
        except Exception:
            log.exception("ingestion job %s failed", job.entry)
            try:
                await knowledge.fail(job, "Indexing this source failed on our side.", now_ms())
                metrics.TRAINING_JOBS.labels("failed").inc()
            except StoreUnavailable:
                finished = False
        finally:
            self._running.pop(job.entry, None)
            if finished:
                try:
                    await knowledge.finish(job)
                except StoreUnavailable:
                    pass  # done already; a later claim finds it stale and only acknowledges it

    async def _started(self, job: Job) -> bool:
        """The job enters the stream just before its source's record is written: a job that finds no
        record (or an older generation) waits for it, up to EARLY_WAIT_SECONDS after it was queued;
        past that its source was deleted (or its add failed) and the job is dropped."""
        queued_ms = int(job.entry.split("-", 1)[0])
        while True:
            state = await self.store.knowledge.start(job, now_ms())
            if state == "run":
                return True
            if state == "stale" or now_ms() - queued_ms > EARLY_WAIT_SECONDS * 1000:
                return False
            await anyio.sleep(0.2)

    async def _documents(self, job: Job, record: SourceRecord) -> list[Document]:
        # Imported on the first job: trafilatura, lxml and aiohttp cost ~0.3 s that a start need not pay.
        from chatspark.knowledge.crawl import crawl
        from chatspark.knowledge.extract import ExtractionError, extract
        from chatspark.knowledge.fetch import FetchError, Fetcher

        if record.type == "text":
            text = await self.store.knowledge.text(job)
            if text is None:
                raise IngestionFailed("The submitted text is gone; add the source again.")
            try:  # as Markdown: its first heading is the source's title
                return [await anyio.to_thread.run_sync(extract, text.encode(), "text/markdown; charset=utf-8", None)]
            except ExtractionError as exc:
                raise IngestionFailed(str(exc)) from None
        assert record.url is not None
        fetcher = Fetcher(self.config)
        try:
            if record.type == "page":
                fetched = [await fetcher.fetch(record.url)]
            else:
                fetched = [page async for page in crawl(
                    record.url, fetcher, max_pages=self.config.max_pages, max_depth=self.config.max_depth,
                    user_agent=self.config.user_agent,
                )]
        except FetchError as exc:
            raise IngestionFailed(str(exc)) from None
        finally:
            await fetcher.aclose()
        documents = []
        for page in fetched:
            try:  # off the event loop: a large page is seconds of parsing, and turns run on that loop
                documents.append(await anyio.to_thread.run_sync(extract, page.body, page.content_type, page.url))
            except ExtractionError as exc:
                if record.type == "page":
                    raise IngestionFailed(str(exc)) from None
        if not documents:
            raise IngestionFailed("No page of this website had text to index.")
        return documents

    async def _index(self, job: Job, documents: list[Document]) -> tuple[int, str | None]:
        """Chunks, embeds and writes every document; (chunk count, the source's title)."""
        chunks: list[Chunk] = []
        for document in documents:
            chunks += await anyio.to_thread.run_sync(
                lambda d=document: chunk(d, max_tokens=self.config.chunk_tokens, overlap_tokens=self.config.chunk_overlap_tokens)
            )
        if not chunks:
            raise IngestionFailed("The source has no text to index.")
        for first in range(0, len(chunks), WRITE_BATCH):
            batch = chunks[first : first + WRITE_BATCH]
            vectors = await self.embedders.embed([_embedded_text(c) for c in batch])
            stored = [
                StoredChunk(c.text, c.title, c.url, c.heading, np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for c, v in zip(batch, vectors, strict=True)
            ]
            if not await self.store.knowledge.store_chunks(job, first, stored):
                raise IngestionFailed("superseded")  # deleted or re-trained meanwhile: the fail is a no-op
        return len(chunks), documents[0].title


def _embedded_text(c: Chunk) -> str:
    # The heading and title say what a chunk is about even when its text does not repeat them.
    return "\n".join(part for part in (c.title, c.heading, c.text) if part)
