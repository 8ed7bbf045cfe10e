"""Agents in Redis: seeded once from config, then created, changed and deleted through the API.

All agent keys share one hash tag: creating, seeding and deleting touch the record and the index
atomically in one slot. Their number is small (an agent is configuration, not traffic).
"""

from __future__ import annotations

import msgspec

from chatspark.agents import Agent
from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.conversations import ConversationIndex
from chatspark.store.errors import IdempotencyMismatch
from chatspark.store.knowledge import KnowledgeStore
from chatspark.store.layout import IDEMPOTENCY_SECONDS, Layout
from chatspark.store.leads import LeadStore
from chatspark.store.webhooks import WebhookStore, event_args
from chatspark.webhook_events import Event

_decoder = msgspec.json.Decoder(Agent)
_encoder = msgspec.json.Encoder()


class Created(msgspec.Struct, frozen=True):
    agent: Agent
    replayed: bool


class AgentStore:
    def __init__(
        self, redis: Connection, layout: Layout, conversations: ConversationIndex, knowledge: KnowledgeStore,
        leads: LeadStore,
        webhooks: WebhookStore,
    ) -> None:
        self.redis = redis
        self.layout = layout
        self.conversations = conversations
        self.knowledge = knowledge
        self.leads = leads
        self.webhooks = webhooks

    async def seed(self, agents: list[Agent], now: int) -> int:
        """Stores each configured agent the first time it is seen; returns how many were new."""
        seeded = 0
        for agent in agents:
            stamped = msgspec.structs.replace(agent, created_at=agent.created_at or now, updated_at=agent.updated_at or now)
            keys = [self.layout.agent(agent.id), self.layout.agent_index(), self.layout.agent_seq(), self.layout.agents_seeded()]
            args = [agent.id, _encoder.encode(stamped), stamped.created_at]
            seeded += int(await self.redis.script(scripts.SEED_AGENT, keys, args))
        return seeded

    async def ids(self) -> list[int]:
        """Every agent's id (for sweeps over all agents)."""
        return [int(m) for m in await self.redis.run(lambda r: r.zrange(self.layout.agent_index(), 0, -1))]

    async def get(self, agent_id: int) -> Agent | None:
        raw = await self.redis.run(lambda r: r.get(self.layout.agent(agent_id)))
        return None if raw is None else _decoder.decode(raw)

    async def list(self, after: tuple[int, int] | None, limit: int, allowed: frozenset[int] | None) -> list[Agent]:
        """Up to `limit` agents newest first (by creation, then id), strictly after `after`."""
        ranked = await self.redis.run(
            lambda r: r.zrevrangebyscore(
                self.layout.agent_index(), "+inf" if after is None else after[0], "-inf", withscores=True
            )
        )
        # Sorted here by (creation, numeric id): Redis breaks score ties by the member's bytes.
        rows = sorted(((int(score), int(member)) for member, score in ranked), reverse=True)
        ids = [
            agent_id
            for created, agent_id in rows
            if (after is None or (created, agent_id) < after) and (allowed is None or agent_id in allowed)
        ][:limit]
        if not ids:
            return []
        raws = await self.redis.run(lambda r: r.mget([self.layout.agent(i) for i in ids]))
        return [_decoder.decode(raw) for raw in raws if raw is not None]

    async def create(self, agent: Agent, *, idempotency_digest: str | None, body_digest: str) -> Created:
        """Stores `agent` under the next free id (its `id` field is replaced)."""
        new_id = int(await self.redis.run(lambda r: r.incr(self.layout.agent_seq())))
        stored = msgspec.structs.replace(agent, id=new_id)
        idem_key = self.layout.agent_idempotency(idempotency_digest or "none")
        keys = [self.layout.agent(new_id), self.layout.agent_index(), idem_key]
        args = [new_id, _encoder.encode(stored), stored.created_at, body_digest, IDEMPOTENCY_SECONDS,
                "1" if idempotency_digest else "0"]
        status, agent_id = await self.redis.script(scripts.CREATE_AGENT, keys, args)
        if status == -1:
            raise IdempotencyMismatch()
        if status == 0:
            earlier = await self.get(int(agent_id))
            if earlier is not None:
                return Created(agent=earlier, replayed=True)
            raise IdempotencyMismatch()  # the agent it made was deleted since; do not make another silently
        return Created(agent=stored, replayed=False)

    async def update(self, agent: Agent, event: Event | None = None) -> bool:
        """Replaces the agent if it still exists, enqueuing `event` (agent.updated) in the same script."""
        outbox = await self.webhooks.outbox(self.layout.agent(agent.id))
        args = [_encoder.encode(agent), *event_args(event)]
        updated = bool(await self.redis.script(scripts.UPDATE_AGENT, [self.layout.agent(agent.id), outbox], args))
        if updated and event is not None:
            await self.webhooks.hint(outbox)
        return updated

    async def delete(self, agent_id: int) -> bool:
        """Removes the agent record and index entry, then every conversation, training source and lead of it."""
        keys = [self.layout.agent(agent_id), self.layout.agent_index()]
        existed = bool(await self.redis.script(scripts.DELETE_AGENT, keys, [agent_id]))
        await self.conversations.delete_all(agent_id)
        await self.knowledge.delete_all(agent_id)
        await self.leads.delete_all(agent_id)
        return existed
