"""Agents in Redis: seeded once from config, then created, changed and deleted through the API.

Rides on `Store` (its client, error mapping and key layout); all agent keys share one hash tag.
"""

from __future__ import annotations

import msgspec

from chatspark.agents import Agent
from chatspark.redis_layout import CREATE_AGENT, DELETE_AGENT, IDEMPOTENCY_SECONDS, SEED_AGENT, UPDATE_AGENT
from chatspark.store import Store

_decoder = msgspec.json.Decoder(Agent)
_encoder = msgspec.json.Encoder()


class IdempotencyMismatch(Exception):
    """The idempotency key was used before with another body."""


class Created(msgspec.Struct, frozen=True):
    agent: Agent
    replayed: bool


class AgentStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.layout = store.layout
        client = store.client
        self._seed = client.register_script(SEED_AGENT)
        self._create = client.register_script(CREATE_AGENT)
        self._update = client.register_script(UPDATE_AGENT)
        self._delete = client.register_script(DELETE_AGENT)

    async def seed(self, agents: list[Agent], now: int) -> int:
        """Stores each configured agent the first time it is seen; returns how many were new."""
        seeded = 0
        for agent in agents:
            stamped = msgspec.structs.replace(agent, created_at=agent.created_at or now, updated_at=agent.updated_at or now)
            keys = [self.layout.agent(agent.id), self.layout.agent_index(), self.layout.agent_seq(), self.layout.agents_seeded()]
            args = [agent.id, _encoder.encode(stamped), stamped.created_at]
            seeded += int(await self.store._call(lambda k=keys, a=args: self._seed(keys=k, args=a)))
        return seeded

    async def get(self, agent_id: int) -> Agent | None:
        raw = await self.store._call(lambda: self.store.client.get(self.layout.agent(agent_id)))
        return None if raw is None else _decoder.decode(raw)

    async def list(self, after: tuple[int, int] | None, limit: int, allowed: frozenset[int] | None) -> list[Agent]:
        """Up to `limit` agents newest first (by creation, then id), strictly after `after`."""
        client = self.store.client
        ranked = await self.store._call(
            lambda: client.zrevrangebyscore(
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
        raws = await self.store._call(lambda: client.mget([self.layout.agent(i) for i in ids]))
        return [_decoder.decode(raw) for raw in raws if raw is not None]

    async def create(self, agent: Agent, *, idempotency_digest: str | None, body_digest: str) -> Created:
        """Stores `agent` under the next free id (its `id` field is replaced)."""
        client = self.store.client
        new_id = int(await self.store._call(lambda: client.incr(self.layout.agent_seq())))
        stored = msgspec.structs.replace(agent, id=new_id)
        idem_key = self.layout.agent_idempotency(idempotency_digest or "none")
        keys = [self.layout.agent(new_id), self.layout.agent_index(), idem_key]
        args = [new_id, _encoder.encode(stored), stored.created_at, body_digest, IDEMPOTENCY_SECONDS,
                "1" if idempotency_digest else "0"]
        status, agent_id = await self.store._call(lambda: self._create(keys=keys, args=args))
        if status == -1:
            raise IdempotencyMismatch()
        if status == 0:
            earlier = await self.get(int(agent_id))
            if earlier is not None:
                return Created(agent=earlier, replayed=True)
            raise IdempotencyMismatch()  # the agent it made was deleted since; do not make another silently
        return Created(agent=stored, replayed=False)

    async def update(self, agent: Agent) -> bool:
        keys = [self.layout.agent(agent.id)]
        return bool(await self.store._call(lambda: self._update(keys=keys, args=[_encoder.encode(agent)])))

    async def delete(self, agent_id: int) -> bool:
        """Removes the agent record and index entry, then every conversation of it."""
        keys = [self.layout.agent(agent_id), self.layout.agent_index()]
        existed = bool(await self.store._call(lambda: self._delete(keys=keys, args=[agent_id])))
        await self.store.delete_agent_conversations(agent_id)
        return existed
