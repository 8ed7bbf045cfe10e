"""The widget's request limits, exact across replicas: per visitor (chat turns and leads) and per
client address (every widget request, all agents together)."""

from __future__ import annotations

import math

from chatspark.apikeys import RATE_WINDOW_MS, rate_headers
from chatspark.config import WidgetConfig
from chatspark.errors import RateLimitExceeded
from chatspark.store import Store
from chatspark.store.keys import RateState
from chatspark.visitors import Visitor


class WidgetLimits:
    def __init__(self, store: Store, config: WidgetConfig) -> None:
        self.store = store
        self.config = config

    async def count(self, address: str, visitor: Visitor | None) -> RateState:
        """Counts one request of `address` (and of `visitor`, when given); returns the limit closest
        to refusing, for the rate headers. Raises RateLimitExceeded with `Retry-After`."""
        per_visitor = None if visitor is None else (visitor.agent_id, visitor.id, self.config.visitor_rate_per_minute)
        by_address, by_visitor = await self.store.rates.count_widget_request(
            address, self.config.address_rate_per_minute, per_visitor, window_ms=RATE_WINDOW_MS
        )
        for state, whose in ((by_visitor, "visitor"), (by_address, "client address")):
            if state is not None and not state.allowed:
                wait = max(math.ceil(state.reset_ms / 1000), 1)
                raise RateLimitExceeded(
                    f"This {whose} may send {state.limit} widget requests per minute.",
                    headers={**rate_headers(state), "retry-after": str(wait)},
                )
        return min((s for s in (by_visitor, by_address) if s is not None), key=lambda s: s.remaining)
