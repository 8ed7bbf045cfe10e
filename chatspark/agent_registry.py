"""The agents a request may use: a short-lived per-process cache over the store for the chat path,
and the rules of creating and changing agents (fields, models) for the management API."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence

import msgspec

from backends.base import ModelSettings
from chatspark import errors
from chatspark.store.agents import AgentStore, Created
from chatspark.store.errors import IdempotencyMismatch, StoreUnavailable
from chatspark.agents import Agent, AgentChanges, apply
from chatspark.clock import iso, now_ms
from chatspark.webhook_events import AgentUpdated, Event

# A change made through any replica is seen by every other within this (the contract says 2 s).
CACHE_SECONDS = 1.0
# Bounds the cache against callers probing many agent ids (negative answers are cached too).
CACHE_ENTRIES = 10_000

_canonical = msgspec.json.Encoder(order="sorted")
# An agent field's name on the wire (`bot_name` -> `botName`), as `agent.updated` names its changes.
_WIRE_NAMES = {f.name: f.encode_name for f in msgspec.structs.fields(AgentChanges)}
log = logging.getLogger("chatspark.agents")


class AgentRegistry:
    def __init__(self, store: AgentStore, models: Mapping[str, ModelSettings], seed: Sequence[Agent] = ()) -> None:
        self.store = store
        self.models = models
        self._cache: dict[int, tuple[float, Agent | None]] = {}
        self._unseeded = list(seed)

    async def seed(self) -> int:
        """Config agents enter the store once; later API edits and deletions win. When the store is
        down at start the service still starts (answering 503) and seeds on its first lookup."""
        if not self._unseeded:
            return 0
        try:
            seeded = await self.store.seed(self._unseeded, now_ms())
        except StoreUnavailable:
            log.error("could not seed the configured agents yet: the store is unreachable")
            return 0
        self._unseeded = []
        return seeded

    async def cached(self, agent_id: int) -> Agent:
        """The agent for a chat turn, at most CACHE_SECONDS old. Raises AgentNotFound."""
        hit = self._cache.get(agent_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            agent = hit[1]
        else:
            await self.seed()
            agent = await self.store.get(agent_id)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[agent_id] = (now + CACHE_SECONDS, agent)
        if agent is None:
            raise errors.AgentNotFound()
        return agent

    async def fetch(self, agent_id: int) -> Agent:
        """The agent as stored right now. Raises AgentNotFound."""
        agent = await self.store.get(agent_id)
        if agent is None:
            raise errors.AgentNotFound()
        return agent

    async def list(self, after: tuple[int, int] | None, limit: int, allowed: frozenset[int] | None) -> list[Agent]:
        return await self.store.list(after, limit, allowed)

    async def create(self, changes: AgentChanges, *, caller: str, idempotency_key: str | None) -> Created:
        if changes.name is msgspec.UNSET:
            raise errors.ValidationFailed.field("name", "is required")
        now = now_ms()
        agent = apply(Agent(id=1, name=changes.name, created_at=now), changes, now)
        self._check_model(agent)
        digest = None
        if idempotency_key is not None:
            # Scoped per API key: two clients choosing the same key never collide.
            digest = hashlib.sha256(f"{caller}\0{idempotency_key}".encode()).hexdigest()
        body_digest = hashlib.sha256(_canonical.encode(changes)).hexdigest()
        try:
            created = await self.store.create(agent, idempotency_digest=digest, body_digest=body_digest)
        except IdempotencyMismatch:
            raise errors.IdempotencyConflict() from None
        self._cache.pop(created.agent.id, None)  # a "not found" cached for the new id a moment ago
        return created

    async def update(self, agent_id: int, changes: AgentChanges) -> Agent:
        before = await self.fetch(agent_id)
        agent = apply(before, changes, now_ms())
        self._check_model(agent)
        # `agent.updated` is enqueued by the same script that stores the change (none if nothing changed).
        changed = [wire for field, wire in _WIRE_NAMES.items()
                   if field in changes.sent() and getattr(before, field) != getattr(agent, field)]
        event = None
        if changed:
            data = AgentUpdated(agent_id=agent_id, updated_at=iso(agent.updated_at), changes=changed)
            event = Event.of("agent.updated", agent_id, data, agent.updated_at)
        if not await self.store.update(agent, event):
            raise errors.AgentNotFound()
        self._cache.pop(agent_id, None)
        return agent

    async def delete(self, agent_id: int) -> None:
        existed = await self.store.delete(agent_id)
        self._cache.pop(agent_id, None)
        if not existed:
            raise errors.AgentNotFound()

    def _check_model(self, agent: Agent) -> None:
        if agent.model_name in self.models:
            return
        field = "model" if agent.model else "gpt4"
        raise errors.ValidationFailed.field(
            field, f"selects model {agent.model_name!r}, which is not configured (known: {', '.join(self.models)})"
        )

