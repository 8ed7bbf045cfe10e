"""An agent's leads: the people who left their contact details, listed newest first, counted per day.

Every lead key of an agent shares its hash tag `{<agent id>}`; each call is one script (one round
trip, atomic, one Cluster slot). Leads never expire: they are deleted one by one (erasure) or with
their agent. The per-day count is of leads *captured*: deleting one does not lower it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.errors import IdempotencyMismatch
from chatspark.store.layout import IDEMPOTENCY_SECONDS, Layout
from chatspark.store.webhooks import WebhookStore, event_args
from chatspark.webhook_events import Event


class LeadRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str | None
    email: str | None
    phone: str | None
    company_name: str | None
    message: str | None
    conversation_id: str | None
    created: int  # ms since the epoch
    idem: str = ""  # the idempotency digest that created it ('' = none): its entry is tombstoned on delete


class Stored(msgspec.Struct, frozen=True):
    record: LeadRecord
    outcome: Literal["created", "replayed"]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LeadRecord)


class LeadStore:
    def __init__(self, redis: Connection, layout: Layout, webhooks: WebhookStore) -> None:
        self.redis = redis
        self.layout = layout
        self.webhooks = webhooks

    async def add(
        self, agent_id: int, record: LeadRecord, day: str, *, idempotency_digest: str | None, body_digest: str,
        event: Event | None = None,
    ) -> Stored:
        """Stores `record` and counts it on `day` (UTC, `2026-12-02`), enqueuing `event` (lead.captured)
        in the same script; with an idempotency digest seen before, answers the lead it created
        instead (and enqueues nothing). Raises IdempotencyMismatch (another body, or that lead was
        deleted since)."""
        stamped = msgspec.structs.replace(record, idem=idempotency_digest or "")
        idem, idem_expiry = self.layout.lead_idempotency(agent_id)
        outbox = await self.webhooks.outbox(self.layout.leads(agent_id)[0])
        keys = [*self.layout.leads(agent_id), idem, idem_expiry, self.layout.lead_daily(agent_id), outbox]
        args = [record.id, _encoder.encode(stamped), record.created, day, idempotency_digest or "", body_digest,
                record.created + IDEMPOTENCY_SECONDS * 1000, record.created, *event_args(event)]
        status, raw = await self.redis.script(scripts.ADD_LEAD, keys, args)
        if status == -1:
            raise IdempotencyMismatch()
        if status == 1 and event is not None:
            await self.webhooks.hint(outbox)
        return Stored(_decoder.decode(raw), "created" if status == 1 else "replayed")

    async def list(self, agent_id: int, after: tuple[int, str] | None, limit: int) -> list[LeadRecord]:
        """Up to `limit` leads newest first by (creation, id), strictly after `after`."""
        args = ["+inf", "", limit] if after is None else [after[0], after[1], limit]
        raws = await self.redis.script(scripts.READ_LEADS, list(self.layout.leads(agent_id)), args)
        return [_decoder.decode(raw) for raw in raws if raw is not None]

    async def delete(self, agent_id: int, lead_id: str) -> bool:
        """Erases one lead; False when the agent has no such lead."""
        keys = [*self.layout.leads(agent_id), self.layout.lead_idempotency(agent_id)[0]]
        return bool(await self.redis.script(scripts.DELETE_LEAD, keys, [lead_id]))

    async def delete_all(self, agent_id: int) -> None:
        """Every lead of an agent, its idempotency entries and its daily counts (the agent is being deleted)."""
        await self.redis.run(lambda r: r.delete(*self.layout.lead_keys(agent_id)))

    async def daily_counts(self, agent_id: int, days: list[str]) -> list[int]:
        """Leads captured on each of `days` (UTC, `2026-12-02`), in order; one round trip."""
        if not days:
            return []
        counts = await self.redis.run(lambda r: r.hmget(self.layout.lead_daily(agent_id), days))
        return [int(count or 0) for count in counts]
