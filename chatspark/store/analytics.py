"""An agent's analytics counters per UTC day, read for a range of days.

They are written with every turn by `scripts.INDEX_CONVERSATION` (see `ConversationStore.append`)
into `Layout.agent_stats`; leads are counted per day by `LeadStore.add`. Both carry the hash tag
`{<agent id>}`, so a range is read in one pipeline on one Cluster slot.
"""

from __future__ import annotations

from typing import Any

from chatspark.store.connection import Connection
from chatspark.store.layout import Layout


class AnalyticsStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    async def daily(self, agent_id: int, days: list[str]) -> tuple[list[dict[str, int]], list[int]]:
        """For each of `days` (UTC, `2026-12-02`), in order: the turn counters (field -> count) and the
        leads captured; one round trip."""
        if not days:
            return [], []

        def read(pipe: Any) -> None:
            for day in days:
                pipe.hgetall(self.layout.agent_stats(agent_id, day))
            pipe.hmget(self.layout.lead_daily(agent_id), days)

        replies = await self.redis.pipeline(read)
        stats = [{field.decode(): int(count) for field, count in reply.items()} for reply in replies[: len(days)]]
        return stats, [int(count or 0) for count in replies[len(days)]]
