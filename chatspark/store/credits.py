"""Monthly credits of an account (an API key, or an agent's widget): held by running turns (scored
by when the hold lapses), charged once the turn is stored. The rules live in `chatspark/credits.py`."""

from __future__ import annotations

from typing import Literal, NamedTuple

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.layout import Layout


class CreditAccount(NamedTuple):
    """Whose cap a turn counts against: an API key (by hash) or an agent's widget (by agent id)."""

    kind: Literal["key", "widget"]
    owner: str


class CreditStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    def _counters(self, account: CreditAccount, month: str) -> tuple[str, str]:
        if account.kind == "widget":
            return self.layout.widget_credits(int(account.owner), month)
        return self.layout.credits(account.owner, month)

    async def hold(self, account: CreditAccount, month: str, cap: int, token: str, hold_ms: int) -> bool:
        """True if one more turn fits under `cap` this month (it is then held)."""
        held, _ = await self.redis.script(scripts.HOLD_CREDIT, self._counters(account, month), [cap, token, hold_ms])
        return held == 1

    async def charge(self, account: CreditAccount, month: str, token: str, ttl_seconds: int) -> int:
        """The hold becomes a used credit; returns the month's used count."""
        return int(await self.redis.script(scripts.CHARGE_CREDIT, self._counters(account, month), [token, ttl_seconds]))

    async def release(self, account: CreditAccount, month: str, token: str) -> None:
        _, held = self._counters(account, month)
        await self.redis.run(lambda r: r.zrem(held, token))
