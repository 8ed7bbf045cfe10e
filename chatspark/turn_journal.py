"""Chat turns sent with an Idempotency-Key, recorded in Redis so any replica can follow or replay
them: a record (body digest, state), the answer's frames in a stream, and the runner's lease.

Rides on `Store` (its client, error mapping and key layout), like `agent_store`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chatspark.redis_layout import CLAIM_TURN, FORGET_TURN, PUBLISH_TURN
from chatspark.store import Store


class JournalEntry(msgspec.Struct, frozen=True):
    position: str  # the stream entry id, for reading on after it
    event_id: int
    frame: bytes
    status: int | None  # set on the last entry: the turn's outcome


class TurnJournal:
    def __init__(self, store: Store, *, ttl_seconds: int, lease_seconds: float) -> None:
        self.store = store
        self.layout = store.layout
        self.ttl_seconds = ttl_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self._claim = store.client.register_script(CLAIM_TURN)
        self._publish = store.client.register_script(PUBLISH_TURN)
        self._forget = store.client.register_script(FORGET_TURN)

    def lease_key(self, digest: str) -> str:
        return self.layout.idempotent_turn(digest)[2]

    async def claim(self, digest: str, body_digest: str, token: str) -> str:
        """'new' (this request runs the turn), 'running', 'done' or 'conflict'."""
        keys = list(self.layout.idempotent_turn(digest))
        args = [body_digest, token, self.lease_ms, self.ttl_seconds]
        reply = await self.store._call(lambda: self._claim(keys=keys, args=args))
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def publish(self, digest: str, token: str, event_id: int, frame: bytes, status: int | None) -> bool:
        """Appends one frame; False if this runner no longer holds the turn."""
        keys = list(self.layout.idempotent_turn(digest))
        args = [token, frame, event_id, "" if status is None else status, self.ttl_seconds]
        return bool(await self.store._call(lambda: self._publish(keys=keys, args=args)))

    async def forget(self, digest: str, token: str) -> None:
        keys = list(self.layout.idempotent_turn(digest))
        await self.store._call(lambda: self._forget(keys=keys, args=[token]))

    async def read(self, digest: str, after: str, block_ms: int | None) -> list[JournalEntry]:
        """Frames after stream position `after`, waiting up to `block_ms` for the first (None: no wait)."""
        _, events, _ = self.layout.idempotent_turn(digest)
        reply: Any = await self.store._call(
            lambda: self.store.client.xread({events: after}, count=256, block=block_ms)
        )
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [
            JournalEntry(
                position=position.decode() if isinstance(position, bytes) else position,
                event_id=int(fields[b"i"]),
                frame=fields[b"f"],
                status=int(fields[b"s"]) if fields[b"s"] else None,
            )
            for position, fields in entries
        ]

    async def runner_alive(self, digest: str) -> bool:
        return bool(await self.store._call(lambda: self.store.client.exists(self.lease_key(digest))))
