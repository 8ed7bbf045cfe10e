"""A Redis Stream worked by a consumer group: what ingestion jobs and webhook deliveries share.

Entries are read once by one consumer; an entry whose consumer went quiet (its replica died) is
claimed by another (XAUTOCLAIM); a running worker keeps its entries' idle time at zero.
"""

from __future__ import annotations

from typing import Any

from chatspark.store.connection import Connection

Entry = tuple[Any, dict[Any, Any]]  # (entry id, fields) as redis-py returns them


class WorkQueue:
    def __init__(self, redis: Connection, stream: str, group: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group

    async def ensure_group(self) -> None:
        await self.redis.run(self._create)

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        async def read(r: Any) -> Any:
            try:
                return await r.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
            except Exception as exc:  # NOGROUP: a Redis that lost its data (no persistence) came back
                if "NOGROUP" not in str(exc):
                    raise
                await self._create(r)
                return []

        reply = await self.redis.run(read, blocking=True)
        entries = reply[0][1] if isinstance(reply, list) and reply else (next(iter(reply.values()))[0] if reply else [])
        return [(entry, fields) for entry, fields in entries if fields]

    async def claim_orphans(self, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        """Entries whose consumer went quiet for `idle_ms`, now `consumer`'s."""
        reply = await self.redis.run(lambda r: r.xautoclaim(self.stream, self.group, consumer, idle_ms, "0-0", count=count))
        return [(entry, fields) for entry, fields in reply[1] if fields]

    async def keep_claimed(self, consumer: str, entries: list[str]) -> None:
        """Resets the idle time of entries still being worked here, so no other replica takes them."""
        if entries:
            await self.redis.run(lambda r: r.xclaim(self.stream, self.group, consumer, 0, entries, justid=True))

    async def _create(self, r: Any) -> None:
        try:
            await r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: another replica made it first
            if "BUSYGROUP" not in str(exc):
                raise
