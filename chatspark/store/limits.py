"""Request rate limits of the widget endpoints, per visitor and per client address: sliding windows
on Redis' clock (the same script body as API keys' limits), so every replica agrees."""

from __future__ import annotations

import secrets

from chatspark.store import scripts
from chatspark.store.connection import Connection, ScriptCall
from chatspark.store.errors import StoreUnavailable
from chatspark.store.keys import RateState
from chatspark.store.layout import Layout


class RateStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    async def count_widget_request(
        self, address: str, address_limit: int, visitor: tuple[int, str, int] | None, *, window_ms: int
    ) -> tuple[RateState, RateState | None]:
        """Counts one request against its client address's limit and, when `visitor` ((agent id,
        visitor id, limit)) is given, against the visitor's; one round trip (two in a cluster, where
        the two logs live in different slots). Each limit counts the requests it let through."""
        member = secrets.token_hex(8)
        calls = [ScriptCall(scripts.COUNT_REQUEST, [self.layout.address_rate_log(address)], [window_ms, address_limit, member])]
        if visitor is not None:
            agent_id, visitor_id, limit = visitor
            calls.append(ScriptCall(
                scripts.COUNT_REQUEST, [self.layout.visitor_rate_log(agent_id, visitor_id)], [window_ms, limit, member]
            ))
        replies = await self.redis.scripts(calls)
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise StoreUnavailable() from failed
        states = [_state(reply) for reply in replies]
        return states[0], states[1] if visitor is not None else None


def _state(reply: list[int]) -> RateState:
    allowed, limit, remaining, reset = reply
    return RateState(allowed == 1, int(limit), max(int(remaining), 0), max(int(reset), 0))
