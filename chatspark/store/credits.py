"""A key's monthly credits: held by running turns (scored by when the hold lapses), charged once
the turn is stored. The rules around them live in `chatspark/credits.py`."""

from __future__ import annotations

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.layout import Layout


class CreditStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    async def hold(self, key_hash: str, month: str, cap: int, token: str, hold_ms: int) -> bool:
        """True if one more turn fits under `cap` this month (it is then held)."""
        held, _ = await self.redis.script(scripts.HOLD_CREDIT, self.layout.credits(key_hash, month), [cap, token, hold_ms])
        return held == 1

    async def charge(self, key_hash: str, month: str, token: str, ttl_seconds: int) -> int:
        """The hold becomes a used credit; returns the month's used count."""
        return int(await self.redis.script(scripts.CHARGE_CREDIT, self.layout.credits(key_hash, month), [token, ttl_seconds]))

    async def release(self, key_hash: str, month: str, token: str) -> None:
        _, held = self.layout.credits(key_hash, month)
        await self.redis.run(lambda r: r.zrem(held, token))
