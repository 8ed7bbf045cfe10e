"""Monthly credits of an account (an API key, or an agent's widget): held by running turns (scored
by when the hold lapses), charged once the turn is stored. The rules live in `chatspark/credits.py`."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from chatspark.store import scripts
from chatspark.store.connection import Connection, ScriptCall
from chatspark.store.layout import Layout


class CreditAccount(NamedTuple):
    """Whose cap a turn counts against: an API key (by hash) or an agent's widget (by agent id)."""

    kind: Literal["key", "widget"]
    owner: str


class Charge(NamedTuple):
    """A held credit to charge with the turn's write (`ConversationStore.append`)."""

    account: CreditAccount
    month: str
    token: str
    ttl_seconds: int  # of the month's count


def counters(layout: Layout, account: CreditAccount, month: str) -> tuple[str, str]:
    """(used, held) of an account's month."""
    if account.kind == "widget":
        return layout.widget_credits(int(account.owner), month)
    return layout.credits(account.owner, month)


def charge_call(layout: Layout, charge: Charge) -> ScriptCall:
    """The charge as a script of a batch that carries others (see CHARGE_CREDIT: once per hold)."""
    return ScriptCall(scripts.CHARGE_CREDIT, counters(layout, charge.account, charge.month),
                      [charge.token, charge.ttl_seconds])


class CreditStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    def _counters(self, account: CreditAccount, month: str) -> tuple[str, str]:
        return counters(self.layout, account, month)

    async def hold(self, account: CreditAccount, month: str, cap: int, token: str, hold_ms: int) -> bool:
        """True if one more turn fits under `cap` this month (it is then held)."""
        held, _ = await self.redis.script(scripts.HOLD_CREDIT, self._counters(account, month), [cap, token, hold_ms])
        return held == 1

    def queue_hold(self, pipe: Any, account: CreditAccount, month: str, cap: int, token: str, hold_ms: int) -> None:
        """`hold` as one command of a pipeline that carries others (`Store.open_turn`): EVAL, not
        EVALSHA, so a Redis that lost its scripts cannot make the pipeline be sent again."""
        used, held = self._counters(account, month)
        pipe.eval(scripts.HOLD_CREDIT.source, 2, used, held, cap, token, hold_ms)

    async def charge(self, account: CreditAccount, month: str, token: str, ttl_seconds: int) -> int:
        """The hold becomes a used credit; returns the month's used count (-1: no such hold)."""
        return int(await self.redis.script(scripts.CHARGE_CREDIT, self._counters(account, month), [token, ttl_seconds]))

    async def release(self, account: CreditAccount, month: str, token: str) -> None:
        _, held = self._counters(account, month)
        await self.redis.run(lambda r: r.zrem(held, token))
