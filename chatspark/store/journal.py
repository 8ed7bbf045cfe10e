"""Chat turns sent with an Idempotency-Key, recorded in Redis so any replica can follow or replay
them: a record (body digest, state), the answer's frames in a stream, and the runner's lease.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.layout import Layout
from chatspark.store.leases import Lease

ClaimState = Literal["new", "running", "done", "conflict"]


class JournalEntry(msgspec.Struct, frozen=True):
    position: str  # the stream entry id, for reading on after it
    event_id: int
    frame: bytes
    status: int | None  # set on the last entry: the turn's outcome


class TurnJournal:
    def __init__(self, redis: Connection, layout: Layout, *, ttl_seconds: int, lease_seconds: float) -> None:
        self.redis = redis
        self.layout = layout
        self.ttl_seconds = ttl_seconds
        self.lease_ms = int(lease_seconds * 1000)

    async def claim(self, digest: str, body_digest: str) -> tuple[ClaimState, Lease, str]:
        """'new' (this request runs the turn, holding the returned lease), 'running', 'done' or
        'conflict'; and the run: the same string for every claim of the key until its record expires."""
        lease = Lease("turn", digest)
        args = [body_digest, lease.token, self.lease_ms, self.ttl_seconds]
        reply = await self.redis.script(scripts.CLAIM_TURN, self.layout.idempotent_turn(digest), args)
        state, run = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
        assert state in ("new", "running", "done", "conflict"), state
        return state, lease, run  # type: ignore[return-value]

    async def publish(self, lease: Lease, event_id: int, frame: bytes, status: int | None) -> bool:
        """Appends one frame; False if this runner no longer holds the turn."""
        args = [lease.token, frame, event_id, "" if status is None else status, self.ttl_seconds]
        return bool(await self.redis.script(scripts.PUBLISH_TURN, self.layout.idempotent_turn(lease.name), args))

    async def forget(self, lease: Lease) -> None:
        await self.redis.script(scripts.FORGET_TURN, self.layout.idempotent_turn(lease.name), [lease.token])

    async def read(self, digest: str, after: str, block_ms: int | None) -> list[JournalEntry]:
        """Frames after stream position `after`, waiting up to `block_ms` for the first (None: no wait)."""
        _, events, _ = self.layout.idempotent_turn(digest)
        reply: Any = await self.redis.run(lambda r: r.xread({events: after}, count=256, block=block_ms),
                                          blocking=block_ms is not None)
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
        _, _, lease = self.layout.idempotent_turn(digest)
        return bool(await self.redis.run(lambda r: r.exists(lease)))
