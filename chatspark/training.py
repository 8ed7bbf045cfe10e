"""An agent's training sources: the rules of adding, re-training, listing and deleting them.

Adding answers at once (`pending`); the content is fetched, chunked and embedded by an ingestion
worker on any replica (`ingestion.py`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from chatspark import errors
from chatspark.clock import iso, now_ms
from chatspark.config import KnowledgeConfig, SeedSource
from chatspark.pagination import Cursors, PageQuery, numeric
from chatspark.schemas import AddSource, PageSource, SourcesPage, TextSource, TrainingSource
from chatspark.store import Store
from chatspark.store.errors import IdempotencyMismatch
from chatspark.store.knowledge import Added, SourceRecord, SourceType

_canonical = msgspec.json.Encoder(order="sorted")


class Training:
    def __init__(self, store: Store, cursors: Cursors, config: KnowledgeConfig) -> None:
        self.store = store
        self.cursors = cursors
        self.config = config

    async def add(self, agent_id: int, body: AddSource, *, caller: str, idempotency_key: str | None) -> Added:
        kind, url, data = self._checked(body)
        digest = None
        if idempotency_key is not None:
            # Scoped per API key: two clients choosing the same key never collide.
            digest = hashlib.sha256(f"{caller}\0{idempotency_key}".encode()).hexdigest()
        body_digest = hashlib.sha256(_canonical.encode(body)).hexdigest()
        try:
            return await self.store.knowledge.add(
                agent_id, body.source, kind, url, data, now_ms(),
                idempotency_digest=digest, body_digest=body_digest,
            )
        except IdempotencyMismatch:
            raise errors.IdempotencyConflict() from None

    async def get(self, agent_id: int, training_id: int) -> SourceRecord:
        record = await self.store.knowledge.get(agent_id, training_id)
        if record is None:
            raise not_found()
        return record

    async def list(self, agent_id: int, page: PageQuery) -> SourcesPage:
        shown, next_cursor = await self.cursors.page(
            f"training:{agent_id}", page, lambda after, n: self.store.knowledge.list(agent_id, numeric(after), n),
            lambda row: (row.created, row.id),
        )
        return SourcesPage(sources=[view(r) for r in shown], next_cursor=next_cursor)

    async def seed(self, seeds: list[SeedSource], folder: Path) -> int:
        """Adds each configured source the first time any replica starts with it; returns how many."""
        added = 0
        for seed in seeds:
            if not await self.store.knowledge.mark_seeded(seed.agent, seed.source):
                continue
            path = folder / seed.file
            if not path.exists():  # a config copied elsewhere still finds the shipped files
                path = Path(__file__).resolve().parent.parent / seed.file
            text = path.read_text()
            await self.add(seed.agent, TextSource(source=seed.source, data=text), caller="seed", idempotency_key=None)
            added += 1
        return added

    async def delete(self, agent_id: int, training_id: int) -> None:
        if not await self.store.knowledge.delete(agent_id, training_id):
            raise not_found()

    def _checked(self, body: AddSource) -> tuple[SourceType, str | None, str]:
        """(type, url, text to index) of a valid body; the type decoded its fields already."""
        if isinstance(body, TextSource):
            if len(body.data.encode()) > self.config.max_text_bytes:
                raise errors.ValidationFailed.field("data", f"must be at most {self.config.max_text_bytes} bytes")
            return "text", None, body.data
        problem = url_problem(body.url, allow_private=self.config.allow_private_urls)
        if problem:
            raise errors.ValidationFailed.field("url", problem)
        return ("page" if isinstance(body, PageSource) else "website"), body.url, ""


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """What is wrong with a source URL, as far as can be told without a lookup (the fetch checks
    every address it connects to, and a refusal found then fails the source with its reason)."""
    from chatspark.knowledge.ssrf import UrlRefused, check_url, refused_host  # aiohttp: not at start

    try:
        target = check_url(url)
    except UrlRefused as refused:
        return refused.reason
    return None if allow_private else refused_host(target.host)


def not_found() -> errors.ResourceNotFound:
    return errors.ResourceNotFound("No such training source for this agent.")


def view(record: SourceRecord) -> TrainingSource:
    return TrainingSource(
        id=record.id, source=record.source, type=record.type, training_url=record.url, title=record.title,
        status=record.status, data_count=record.data_count, error=record.error,
        created_at=iso(record.created), updated_at=iso(record.updated),
    )
