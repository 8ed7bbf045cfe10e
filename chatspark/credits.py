"""Monthly caps of completed chat turns per API key (and per agent's widget), exact across replicas.

A turn holds one credit before it runs (so twenty concurrent turns against a cap of five run
five), the credit becomes a charge once the turn is stored, and goes back if the turn fails.
Idempotent replays never hold one: they run nothing.
"""

from __future__ import annotations

import calendar
import logging
import secrets
from datetime import UTC, datetime

import anyio
import msgspec

from chatspark import errors
from chatspark.apikeys import Principal
from chatspark.config import LimitsConfig
from chatspark.store import Store
from chatspark.store.credits import Charge, CreditAccount
from chatspark.store.errors import StoreUnavailable

log = logging.getLogger("chatspark.credits")
KEEP_USAGE_DAYS = 62  # a month's count outlives the month, for reporting


class Hold(msgspec.Struct, frozen=True):
    """One credit held by a running turn; `TurnResources` charges or releases it, once."""

    account: CreditAccount
    month: str  # "2026-11" (UTC)
    cap: int  # the caller's monthly cap (named when it is reached)
    token: str = msgspec.field(default_factory=lambda: secrets.token_hex(12))


class Credits:
    def __init__(self, store: Store, limits: LimitsConfig) -> None:
        self.store = store
        self.limits = limits
        self.store_errors = 0  # turns that could not be counted (logged with the running total)

    async def hold(self, caller: Principal) -> Hold | None:
        """One credit for a turn about to run; None when the key has no cap (or, failing open, when
        the store cannot count). Raises CreditsExhausted."""
        hold = self.plan(caller)
        if hold is None:
            return None
        try:
            held = await self.store.credits.hold(*self.request(hold))
        except StoreUnavailable:
            self._count_error("hold a credit")
            if self.limits.on_store_error == "closed":
                raise
            return None
        if not held:
            raise self.refused(hold)
        return hold

    def plan(self, caller: Principal) -> Hold | None:
        """The credit a turn of `caller` must hold (None: no cap), to be taken by `Store.open_turn`
        in the turn's first round trip (see `request` and `refused`)."""
        if caller.monthly_cap <= 0:
            return None
        return Hold(caller.credit_account, f"{datetime.now(UTC):%Y-%m}", cap=caller.monthly_cap)

    def request(self, hold: Hold) -> tuple[CreditAccount, str, int, str, int]:
        """What `Store.open_turn` needs to hold `hold`."""
        return hold.account, hold.month, hold.cap, hold.token, int(self.limits.hold_seconds * 1000)

    def refused(self, hold: Hold) -> errors.CreditsExhausted:
        whose = "This agent's widget's" if hold.account.kind == "widget" else "This key's"
        return errors.CreditsExhausted(f"{whose} {hold.cap} chat turns for {hold.month} (UTC) are used up.")

    def charge_with_write(self, hold: Hold) -> Charge:
        """The charge for the turn's write to carry (`ConversationStore.append`): once stored, spent."""
        return Charge(hold.account, hold.month, hold.token, _usage_ttl(hold.month))

    async def charge(self, hold: Hold) -> None:
        """The turn was stored: its credit is spent."""
        try:
            await self.store.credits.charge(hold.account, hold.month, hold.token, _usage_ttl(hold.month))
        except StoreUnavailable:
            self._count_error("charge a stored turn")

    async def release(self, hold: Hold) -> None:
        """The turn did not complete: its credit goes back. Safe under cancellation."""
        with anyio.CancelScope(shield=True):
            try:
                await self.store.credits.release(hold.account, hold.month, hold.token)
            except StoreUnavailable:
                log.warning("could not release a credit; it lapses after %gs", self.limits.hold_seconds)

    def _count_error(self, what: str) -> None:
        self.store_errors += 1
        log.error("could not %s: the store is unreachable (%d so far; on_store_error=%s)",
                  what, self.store_errors, self.limits.on_store_error)


def _usage_ttl(month: str) -> int:
    year, number = (int(part) for part in month.split("-"))
    last_day = calendar.monthrange(year, number)[1]
    end = datetime(year, number, last_day, 23, 59, 59, tzinfo=UTC)
    return int((end - datetime.now(UTC)).total_seconds()) + KEEP_USAGE_DAYS * 86400
