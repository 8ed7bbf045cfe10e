"""Leases: one running turn per conversation, one runner per idempotent turn, across replicas.

A lease is a Redis string holding its holder's token with a PX expiry. Callers hold `Lease` handles
(what is guarded and the token); the key stays inside the store.
"""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection, ScriptCall
from chatspark.store.errors import LeaseTaken
from chatspark.store.layout import Layout


class Lease(msgspec.Struct, frozen=True):
    kind: Literal["conversation", "turn"]
    name: str  # the conversation id, or the idempotent turn's digest
    token: str = msgspec.field(default_factory=lambda: secrets.token_hex(12))


class LeaseStore:
    def __init__(self, redis: Connection, layout: Layout, lease_seconds: float) -> None:
        self.redis = redis
        self.layout = layout
        self.lease_ms = int(lease_seconds * 1000)

    def key(self, lease: Lease) -> str:
        if lease.kind == "conversation":
            return self.layout.lease(lease.name)
        return self.layout.idempotent_turn(lease.name)[2]

    async def take(self, lease: Lease) -> None:
        """Takes a free lease (a conversation about to be created needs no read). Raises LeaseTaken."""
        key = self.key(lease)
        if not await self.redis.run(lambda r: r.set(key, lease.token, nx=True, px=self.lease_ms)):
            raise LeaseTaken()

    async def release(self, lease: Lease) -> None:
        await self.redis.script(scripts.RELEASE_LEASE, [self.key(lease)], [lease.token])

    async def renew(self, leases: list[Lease]) -> list[bool]:
        """Extends each lease by a full term, in one round trip; False where its token no longer holds it."""
        if not leases:
            return []
        calls = [ScriptCall(scripts.RENEW_LEASE, [self.key(lease)], [lease.token, self.lease_ms]) for lease in leases]
        return [reply == 1 for reply in await self.redis.scripts(calls)]
