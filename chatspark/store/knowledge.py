"""An agent's training sources and their chunks (with vectors), and the ingestion job stream.

Every key of an agent's knowledge shares its hash tag; a source owns its chunks (deleted with it,
and with its agent). Content is built as a new *generation* beside the live one and swapped in by
one script, so a re-train never leaves a moment with neither. The agent's knowledge *version*
moves on every swap and delete: replicas rebuild their in-memory index when it changes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.errors import IdempotencyMismatch
from chatspark.store.layout import IDEMPOTENCY_SECONDS, Layout
from chatspark.store.webhooks import WebhookStore, event_args
from chatspark.store.work_queue import WorkQueue
from chatspark.webhook_events import Event, TrainingFinished

SourceType = Literal["text", "page", "website"]
SourceStatus = Literal["pending", "processing", "completed", "failed"]
JOB_GROUP = "ingest"
JOBS_MAX = 100_000  # the stream is trimmed to about this many entries (acknowledged ones are deleted)


class SourceRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    agent_id: int
    source: str  # the slug, unique per agent
    type: SourceType
    url: str | None
    title: str | None
    status: SourceStatus
    data_count: int | None  # chunks of the live generation
    error: str | None
    created: int
    updated: int
    live: int  # the generation answering now (0: none yet)
    pending: int  # the generation being built (0: none)


class StoredChunk(msgspec.Struct, frozen=True, array_like=True):
    """A chunk as stored, its vector as float32 bytes."""

    text: str
    title: str | None
    url: str | None
    heading: str | None
    vector: bytes


class Job(msgspec.Struct, frozen=True, kw_only=True):
    entry: str  # the stream entry id
    agent_id: int
    training_id: int
    generation: int
    deliveries: int = 1


class Added(msgspec.Struct, frozen=True):
    record: SourceRecord
    outcome: Literal["created", "retrained", "replayed"]


_encode = msgspec.msgpack.Encoder().encode
_chunk_decoder = msgspec.msgpack.Decoder(StoredChunk)


class KnowledgeStore:
    def __init__(self, redis: Connection, layout: Layout, webhooks: WebhookStore) -> None:
        self.redis = redis
        self.layout = layout
        self.webhooks = webhooks
        self.jobs = WorkQueue(redis, layout.ingestion_jobs(), JOB_GROUP)

    # -- sources -----------------------------------------------------------------------------------

    async def add(
        self, agent_id: int, slug: str, kind: SourceType, url: str | None, data: str, now: int, *,
        idempotency_digest: str | None, body_digest: str,
    ) -> Added:
        """Creates the source or re-trains the agent's source of that slug, and queues its job.

        The job enters the stream first: a source is never pending without a job. A job whose
        source is not written yet waits for it (see `start`)."""
        seq, gens = self.layout.knowledge_counters(agent_id)
        slugs = self.layout.knowledge_slugs(agent_id)
        for _ in range(5):
            existing, new_id, generation = await self.redis.pipeline(
                lambda p: (p.hget(slugs, slug), p.incr(seq), p.incr(gens))
            )
            old_id = int(existing) if existing else 0
            await self.queue(agent_id, old_id or int(new_id), int(generation))
            keys = [
                slugs, self.layout.knowledge_sources(agent_id),
                self.layout.knowledge_source(agent_id, int(new_id)), self.layout.knowledge_data(agent_id, int(new_id)),
                self.layout.knowledge_idempotency(agent_id, idempotency_digest or "none"),
                self.layout.knowledge_source(agent_id, old_id or int(new_id)),
                self.layout.knowledge_data(agent_id, old_id or int(new_id)),
            ]
            args = [slug, new_id, generation, kind, url or "", now, data, body_digest if idempotency_digest else "",
                    IDEMPOTENCY_SECONDS, old_id or ""]
            status, training_id = await self.redis.script(scripts.ADD_SOURCE, keys, args)
            if status == -1:
                raise IdempotencyMismatch()
            if status != -2:
                record = await self.get(agent_id, int(training_id))
                if record is None:  # deleted since (a replay of a deleted source)
                    raise IdempotencyMismatch()
                outcome = {1: "created", 2: "retrained", 0: "replayed"}[int(status)]
                if outcome != "replayed":  # as accepted: a worker may have picked it up already
                    record = msgspec.structs.replace(record, status="pending", error=None)
                return Added(record, outcome)  # type: ignore[arg-type]
        raise RuntimeError("a source slug kept changing under concurrent adds")

    async def get(self, agent_id: int, training_id: int) -> SourceRecord | None:
        raw = await self.redis.run(lambda r: r.hgetall(self.layout.knowledge_source(agent_id, training_id)))
        return _record(agent_id, raw) if raw else None

    async def list(self, agent_id: int, after: tuple[int, int] | None, limit: int) -> list[SourceRecord]:
        """Newest first by (creation, id), strictly after `after`."""
        top = "+inf" if after is None else after[0]
        ranked = await self.redis.run(
            lambda r: r.zrevrangebyscore(self.layout.knowledge_sources(agent_id), top, "-inf", withscores=True)
        )
        rows = sorted(((int(score), int(member)) for member, score in ranked), reverse=True)
        ids = [tid for created, tid in rows if after is None or (created, tid) < after][:limit]
        raws = await self.redis.pipeline(
            lambda p: [p.hgetall(self.layout.knowledge_source(agent_id, tid)) for tid in ids]
        )
        return [_record(agent_id, raw) for raw in raws if raw]

    async def delete(self, agent_id: int, training_id: int) -> bool:
        for _ in range(5):
            record = await self.get(agent_id, training_id)
            if record is None:
                return False
            keys = [
                self.layout.knowledge_source(agent_id, training_id), self.layout.knowledge_slugs(agent_id),
                self.layout.knowledge_sources(agent_id),
                self.layout.knowledge_chunks(agent_id, training_id, record.live),
                self.layout.knowledge_chunks(agent_id, training_id, record.pending),
                self.layout.knowledge_data(agent_id, training_id), self.layout.knowledge_version(agent_id),
            ]
            done = await self.redis.script(scripts.DELETE_SOURCE, keys, [training_id, record.live, record.pending])
            if done != 0:
                return done == 1
        return False

    async def delete_all(self, agent_id: int) -> None:
        """Every source of an agent and its counters (the agent is being deleted)."""
        ids = await self.redis.run(lambda r: r.zrange(self.layout.knowledge_sources(agent_id), 0, -1))
        for tid in ids:
            await self.delete(agent_id, int(tid))
        await self.redis.run(lambda r: r.delete(
            *self.layout.knowledge_counters(agent_id), self.layout.knowledge_version(agent_id),
            self.layout.knowledge_slugs(agent_id), self.layout.knowledge_sources(agent_id),
            self.layout.knowledge_seeded(agent_id),
        ))

    async def mark_seeded(self, agent_id: int, slug: str) -> bool:
        """True the first time a configured source is seen (deleted ones stay deleted)."""
        return bool(await self.redis.run(lambda r: r.sadd(self.layout.knowledge_seeded(agent_id), slug)))

    # -- what turns read ---------------------------------------------------------------------------

    def queue_version(self, pipe: Any, agent_id: int) -> None:
        """Adds the agent's knowledge version to a turn's pipeline (no round trip of its own)."""
        pipe.get(self.layout.knowledge_version(agent_id))

    async def version(self, agent_id: int) -> int:
        return int(await self.redis.run(lambda r: r.get(self.layout.knowledge_version(agent_id))) or 0)

    async def live_chunks(self, agent_id: int) -> tuple[int, list[tuple[SourceRecord, list[StoredChunk]]]]:
        """(version, each answering source with its live chunks in order), read for an index build.

        Consistent: read between two reads of the version, again if a swap or delete moved it
        meanwhile (a swap deletes the old generation, which a read in between would miss)."""
        for _ in range(10):
            version = await self.version(agent_id)
            found = await self._read_live(agent_id)
            if await self.version(agent_id) == version:
                return version, found
        return version, found  # knowledge changing faster than it can be read: the next turn reads again

    async def _read_live(self, agent_id: int) -> list[tuple[SourceRecord, list[StoredChunk]]]:
        records = [r for r in await self.list(agent_id, None, 1_000_000) if r.live]
        raws = await self.redis.pipeline(
            lambda p: [p.hgetall(self.layout.knowledge_chunks(agent_id, r.id, r.live)) for r in records]
        )
        found = []
        for record, raw in zip(records, raws, strict=True):
            ordered = sorted(raw.items(), key=lambda item: int(item[0]))
            found.append((record, [_chunk_decoder.decode(blob) for _, blob in ordered]))
        return found

    # -- what ingestion workers do -----------------------------------------------------------------

    async def queue(self, agent_id: int, training_id: int, generation: int) -> None:
        fields = {"agent": agent_id, "source": training_id, "generation": generation}
        await self.redis.run(
            lambda r: r.xadd(self.layout.ingestion_jobs(), fields, maxlen=JOBS_MAX, approximate=True)
        )

    async def ensure_group(self) -> None:
        await self.jobs.ensure_group()

    async def next_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        return [_job(entry, fields) for entry, fields in await self.jobs.read_new(consumer, count, block_ms)]

    async def orphaned_jobs(self, consumer: str, idle_ms: int, count: int) -> list[Job]:
        """Jobs whose worker went quiet for `idle_ms` (its replica died), now this consumer's."""
        claimed = [_job(entry, fields) for entry, fields in await self.jobs.claim_orphans(consumer, idle_ms, count)]
        if not claimed:
            return []
        pending = await self.redis.run(lambda r: r.xpending_range(
            self.layout.ingestion_jobs(), JOB_GROUP, min=claimed[0].entry, max=claimed[-1].entry, count=len(claimed) * 2,
        ))
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [msgspec.structs.replace(j, deliveries=deliveries.get(j.entry, 1)) for j in claimed]

    async def keep_claimed(self, consumer: str, entries: list[str]) -> None:
        """Resets the idle time of jobs still running here, so no other replica takes them over."""
        await self.jobs.keep_claimed(consumer, entries)

    async def finish(self, job: Job) -> None:
        """Acknowledges and deletes the job's entry (the stream keeps only work not yet done)."""
        jobs = self.layout.ingestion_jobs()
        await self.redis.pipeline(lambda p: (p.xack(jobs, JOB_GROUP, job.entry), p.xdel(jobs, job.entry)))

    async def start(self, job: Job, now: int) -> Literal["run", "early", "stale"]:
        reply = await self.redis.script(
            scripts.START_JOB, [self.layout.knowledge_source(job.agent_id, job.training_id)], [job.generation, now]
        )
        return {1: "run", 0: "early"}.get(int(reply), "stale")  # type: ignore[return-value]

    async def text(self, job: Job) -> str | None:
        raw = await self.redis.run(lambda r: r.get(self.layout.knowledge_data(job.agent_id, job.training_id)))
        return None if raw is None else raw.decode()

    async def store_chunks(self, job: Job, first: int, chunks: list[StoredChunk]) -> bool:
        """Writes chunks numbered from `first`; False when the generation is no longer pending."""
        keys = [self.layout.knowledge_source(job.agent_id, job.training_id),
                self.layout.knowledge_chunks(job.agent_id, job.training_id, job.generation)]
        args: list[Any] = [job.generation]
        for n, chunk in enumerate(chunks, start=first):
            args += [n, _encode(chunk)]
        return bool(await self.redis.script(scripts.STORE_CHUNKS, keys, args))

    async def complete(self, job: Job, title: str | None, count: int, now: int) -> bool:
        """Swaps the job's generation in, enqueuing `training.completed` in the same script; False
        when it went stale (its chunks are dropped, no event)."""
        record_key = self.layout.knowledge_source(job.agent_id, job.training_id)
        outbox = await self.webhooks.outbox(record_key)
        for _ in range(5):
            record = await self.get(job.agent_id, job.training_id)
            if record is None:  # deleted meanwhile: the script drops the chunks
                record = SourceRecord(id=job.training_id, agent_id=job.agent_id, source="", type="text", url=None,
                                      title=None, status="pending", data_count=None, error=None, created=now,
                                      updated=now, live=0, pending=0)
            keys = [
                record_key,
                self.layout.knowledge_chunks(job.agent_id, job.training_id, job.generation),
                self.layout.knowledge_chunks(job.agent_id, job.training_id, record.live),
                self.layout.knowledge_version(job.agent_id), self.layout.knowledge_data(job.agent_id, job.training_id),
                outbox,
            ]
            event = _training_event(record, "completed", count, None, now)
            args = [job.generation, record.live, title or "", now, count, *event_args(event)]
            done = await self.redis.script(scripts.COMPLETE_JOB, keys, args)
            if done == 1:
                await self.webhooks.hint(outbox)
            if done != -1:
                return done == 1
        return False

    async def fail(self, job: Job, error: str, now: int) -> None:
        """Records the failure, enqueuing `training.failed` in the same script (unless stale)."""
        record_key = self.layout.knowledge_source(job.agent_id, job.training_id)
        record = await self.get(job.agent_id, job.training_id)
        outbox = await self.webhooks.outbox(record_key)
        keys = [record_key,
                self.layout.knowledge_chunks(job.agent_id, job.training_id, job.generation),
                self.layout.knowledge_data(job.agent_id, job.training_id), outbox]
        event = None if record is None else _training_event(record, "failed", record.data_count, error[:500], now)
        if await self.redis.script(scripts.FAIL_JOB, keys, [job.generation, error[:500], now, *event_args(event)]) == 1:
            await self.webhooks.hint(outbox)


def _training_event(record: SourceRecord, status: Literal["completed", "failed"], count: int | None,
                    error: str | None, now: int) -> Event:
    data = TrainingFinished(training_id=record.id, agent_id=record.agent_id, source=record.source, status=status,
                            data_count=count, error=error)
    return Event.of(f"training.{status}", record.agent_id, data, now)  # type: ignore[arg-type]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _job(entry: Any, fields: dict[Any, Any]) -> Job:
    values = {_text(k): _text(v) for k, v in fields.items()}
    return Job(entry=_text(entry), agent_id=int(values["agent"]), training_id=int(values["source"]),
               generation=int(values["generation"]))


def _record(agent_id: int, raw: dict[bytes, bytes]) -> SourceRecord:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    return SourceRecord(
        id=int(f["id"]), agent_id=agent_id, source=f["source"], type=f["type"],  # type: ignore[arg-type]
        url=f.get("url") or None, title=f.get("title") or None, status=f["status"],  # type: ignore[arg-type]
        data_count=int(f["count"]) if f.get("count") else None, error=f.get("error") or None,
        created=int(f["created"]), updated=int(f["updated"]), live=int(f.get("live") or 0),
        pending=int(f.get("pending") or 0),
    )
