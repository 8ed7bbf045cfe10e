"""The data model on Redis: one module per stored concept, all behind one seam (`connection.py`).

| module           | holds                                                                 |
|------------------|-----------------------------------------------------------------------|
| `connection.py`  | the client for a URL (`memory://`: the embedded twin), commands, scripts |
| `layout.py`      | every key, its type and TTL or owner                                  |
| `scripts.py`     | every Lua script                                                      |
| `conversations.py` | turns, ratings, an agent's conversation index                       |
| `leases.py`      | one running turn per conversation, one runner per idempotent turn     |
| `journal.py`     | idempotent chat turns: record and answer frames                       |
| `keys.py`        | API keys (by hash) and their rate limits                              |
| `credits.py`     | monthly credits held and charged per key and per agent's widget       |
| `limits.py`      | the widget's request rate limits, per visitor and per client address  |
| `agents.py`      | agents, their index and idempotent creation                           |
| `knowledge.py`   | training sources, their chunks and vectors, the ingestion job stream  |
| `leads.py`       | an agent's leads, their list, idempotent creation, per-day counts     |
| `webhooks.py`    | webhooks, the event outbox, deliveries, their queue and retries       |
| `work_queue.py`  | a stream worked by a consumer group (ingestion jobs, deliveries)      |
| `analytics.py`   | an agent's daily counters, read for a period                          |
| `errors.py`      | what the store raises (plain exceptions; the API maps them)           |
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import msgspec

from chatspark.store.agents import AgentStore
from chatspark.store.analytics import AnalyticsStore
from chatspark.store.config import StoreConfig
from chatspark.store.connection import MEMORY_URL, Connection, connect, safe_url
from chatspark.store.conversations import Conversation, ConversationIndex, ConversationStore
from chatspark.store.credits import CreditAccount, CreditStore
from chatspark.store.errors import LeaseTaken, StoreUnavailable
from chatspark.store.journal import TurnJournal
from chatspark.store.keys import KeyStore
from chatspark.store.knowledge import KnowledgeStore
from chatspark.store.layout import Layout
from chatspark.store.leads import LeadStore
from chatspark.store.leases import Lease, LeaseStore
from chatspark.store.limits import RateStore
from chatspark.store.webhooks import WebhookStore

log = logging.getLogger("chatspark.store")

# What holding a monthly credit takes: (account, month "2026-12", cap, token, hold ms).
CreditHold = tuple[CreditAccount, str, int, str, int]


class Store:
    """Every stored concept on one connection."""

    def __init__(self, redis: Connection, config: StoreConfig) -> None:
        self.redis = redis
        self.config = config
        layout = Layout(config.prefix)
        self._layout = layout
        self.webhooks = WebhookStore(redis, layout)
        self.conversations = ConversationStore(redis, layout, config, self.webhooks)
        self.conversation_index = ConversationIndex(redis, layout, self.webhooks)
        self.leases = LeaseStore(redis, layout, config.lease_seconds)
        self.journal = TurnJournal(
            redis, layout, ttl_seconds=config.idempotency_seconds, lease_seconds=config.lease_seconds
        )
        self.keys = KeyStore(redis, layout)
        self.credits = CreditStore(redis, layout)
        self.rates = RateStore(redis, layout)
        self.knowledge = KnowledgeStore(redis, layout, self.webhooks)
        self.leads = LeadStore(redis, layout, self.webhooks)
        self.analytics = AnalyticsStore(redis, layout)
        self.agents = AgentStore(redis, layout, self.conversation_index, self.knowledge, self.leads, self.webhooks)

    @property
    def embedded(self) -> bool:
        return self.redis.embedded

    async def ping(self) -> None:
        await self.redis.ping()

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def open_turn(
        self, agent_id: int, lease: Lease, cid: str | None = None, recent: int = 0, credit: CreditHold | None = None,
    ) -> tuple[Conversation | None, int, bool]:
        """What a turn reads before it runs, in one round trip: the conversation's lease (taken),
        its metadata and last `recent` turns (none for a new one, `cid` None), the agent's
        knowledge version and, with `credit`, a monthly credit held (False: the cap is reached;
        the caller lets the lease go). Raises LeaseTaken (a credit held in the same trip is given
        back first). Not in a Redis Cluster, where a script cannot ride a pipeline: `credit_rides`."""
        held = True
        queue_credit = credit is not None

        def read(pipe: Any) -> None:
            if cid is None:
                self.conversations.queue_new_lease(pipe, lease)
            else:
                self.conversations.queue_load(pipe, cid, recent, lease)
            self.knowledge.queue_version(pipe, agent_id)
            if queue_credit:
                self.credits.queue_hold(pipe, *credit)  # type: ignore[misc]

        replies = await self.redis.pipeline(read)
        if queue_credit:
            held, replies = replies[-1][0] == 1, replies[:-1]
        version = int(replies[-1] or 0)
        try:
            if cid is None:
                if not replies[0]:
                    raise LeaseTaken()
                return None, version, held
            return await self.conversations.parse_load(replies[:-1], cid, recent, lease), version, held
        except LeaseTaken:
            if credit is not None and held:
                account, month, _, token, _ = credit
                await self.credits.release(account, month, token)
            raise

    @property
    def credit_rides(self) -> bool:
        """Whether `open_turn` can take a turn's credit in its round trip (not in a Redis Cluster)."""
        return not self.config.cluster

    async def cursor_secret(self) -> bytes:
        """The deployment's cursor-signing key, made once by whichever replica asks first."""
        return await self._singleton_secret(self._layout.cursor_secret())

    async def visitor_secret(self) -> bytes:
        """The deployment's key for visitor tokens and widget conversation ids (like the cursor
        secret: every replica must accept what any other signed)."""
        return await self._singleton_secret(self._layout.visitor_secret())

    async def _singleton_secret(self, key: str) -> bytes:
        await self.redis.run(lambda r: r.set(key, secrets.token_bytes(32), nx=True))
        return bytes(await self.redis.run(lambda r: r.get(key)))


async def open_store(config: StoreConfig, *, fall_back_to_memory: bool = False) -> Store:
    """The store at `config.url`. When Redis is unreachable at start: with `fall_back_to_memory`
    (`serve --dev`) the embedded twin, said loudly; else the store as is (requests get 503 until
    Redis is back)."""
    store = Store(connect(config), config)
    if store.embedded:
        return store
    try:
        await store.ping()
        return store
    except StoreUnavailable as exc:
        if not fall_back_to_memory:
            log.error("Redis at %s is unreachable (%s); requests get 503 until it is back", safe_url(config.url), exc.__cause__)
            return store
        await store.aclose()
    log.warning(
        "\n%s\n  No Redis at %s: using the EMBEDDED in-process store.\n"
        "  Conversations and keys live in this process only and vanish when it stops.\n"
        "  Fine on a laptop; never use it behind a load balancer. Set REDIS_URL for a real Redis.\n%s",
        "!" * 78, safe_url(config.url), "!" * 78,
    )
    memory = msgspec.structs.replace(config, url=MEMORY_URL)
    return Store(connect(memory), memory)


__all__ = ["Store", "StoreConfig", "StoreUnavailable", "open_store"]
