"""The conversation and API-key store on Redis (or the embedded in-process twin for local use).

The only module that imports redis. Every failure to reach Redis becomes `StoreUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from chatspark.config import StoreConfig
from chatspark.errors import ServiceUnavailable
from chatspark.redis_layout import APPEND_TURN, KEY_TOMBSTONE_SECONDS, Layout

log = logging.getLogger("chatspark.store")
T = TypeVar("T")


class StoreUnavailable(ServiceUnavailable):
    pass


class StoredTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One exchange as stored: the user's message and the assistant's complete answer."""

    id: str  # the assistant message id; also what makes a retried write a no-op
    user_id: str  # the user message id
    query: str
    response: str
    model: str
    created: int  # ms since the epoch
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: int
    created: int
    updated: int
    turn_count: int
    ttl_seconds: int
    recent_turns: list[StoredTurn]  # oldest first, at most the number asked for


class AppendResult(msgspec.Struct, frozen=True):
    stored: bool  # False: this turn id was already stored by an earlier attempt
    turn_count: int
    created: int


class ConversationGone(Exception):
    """The conversation expired or was deleted while a turn ran."""


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    hash: str
    mode: str  # "live" | "test"
    scopes: list[str]
    agents: list[int] | None = None  # None: every agent
    created: int
    expires: int | None = None  # ms since the epoch
    revoked: int | None = None
    name: str = ""


_turn_decoder = msgspec.json.Decoder(StoredTurn)
_key_decoder = msgspec.json.Decoder(ApiKeyRecord)
_encoder = msgspec.json.Encoder()


class Store:
    def __init__(self, client: Any, config: StoreConfig, *, embedded: bool = False) -> None:
        self.client = client
        self.config = config
        self.embedded = embedded
        self.layout = Layout(config.prefix)
        self._append_turn = client.register_script(APPEND_TURN)

    async def ping(self) -> None:
        await self._call(self.client.ping)

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except RedisError:
            pass

    # -- conversations ---------------------------------------------------------------------------

    async def load_conversation(self, cid: str, recent: int) -> Conversation | None:
        """The conversation's metadata and its last `recent` turns, in one round trip."""
        meta_key, turns_key, _ = self.layout.conversation(cid)

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(meta_key)
            if recent > 0:
                pipe.lrange(turns_key, -recent, -1)
            return await pipe.execute()

        replies = await self._call(read)
        meta = replies[0]
        if not meta:
            return None
        raw_turns = replies[1] if recent > 0 else []
        return Conversation(
            id=cid,
            agent_id=int(meta[b"agent"]),
            created=int(meta[b"created"]),
            updated=int(meta[b"updated"]),
            turn_count=int(meta[b"turns"]),
            ttl_seconds=int(meta[b"ttl"]),
            recent_turns=[_turn_decoder.decode(raw) for raw in raw_turns],
        )

    async def append_turn(
        self, cid: str, agent_id: int, turn: StoredTurn, *, ttl_seconds: int, new: bool
    ) -> AppendResult:
        """Stores one complete turn and slides the conversation's TTL. Safe to retry."""
        keys = self.layout.conversation(cid)
        args = [turn.id, _encoder.encode(turn), turn.created, ttl_seconds, self.config.max_turns, agent_id, int(new)]
        last_error: StoreUnavailable | None = None
        for attempt in range(self.config.write_attempts):
            try:
                status, count, created = await self._call(lambda: self._append_turn(keys=keys, args=args))
                break
            except StoreUnavailable as exc:
                last_error = exc
                log.warning("turn write attempt %d failed: %s", attempt + 1, exc.__cause__ or exc)
        else:
            assert last_error is not None
            raise last_error
        if status < 0:
            raise ConversationGone(cid)
        return AppendResult(stored=status == 1, turn_count=int(count), created=int(created))

    # -- API keys --------------------------------------------------------------------------------

    async def get_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        raw = await self._call(lambda: self.client.get(self.layout.api_key(key_hash)))
        return None if raw is None else _key_decoder.decode(raw)

    async def put_api_key(self, record: ApiKeyRecord) -> None:
        await self._call(lambda: self._write_key(record))
        await self._call(lambda: self.client.hset(self.layout.api_key_index(), record.id, record.hash))

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        index = await self._call(lambda: self.client.hgetall(self.layout.api_key_index()))
        records = []
        for key_id, key_hash in sorted(index.items()):
            record = await self.get_api_key(key_hash.decode())
            if record is None:  # its TTL ran out: drop it from the index too
                await self._call(lambda k=key_id: self.client.hdel(self.layout.api_key_index(), k))
            else:
                records.append(record)
        return records

    async def revoke_api_key(self, key_id: str, now_ms: int) -> ApiKeyRecord | None:
        key_hash = await self._call(lambda: self.client.hget(self.layout.api_key_index(), key_id))
        if key_hash is None:
            return None
        record = await self.get_api_key(key_hash.decode())
        if record is None:
            return None
        if record.revoked is None:
            record = msgspec.structs.replace(record, revoked=now_ms)
            await self._call(lambda: self._write_key(record))
        return record

    async def _write_key(self, record: ApiKeyRecord) -> None:
        key = self.layout.api_key(record.hash)
        value = _encoder.encode(record)
        if record.revoked is not None:
            await self.client.set(key, value, pxat=record.revoked + KEY_TOMBSTONE_SECONDS * 1000)
        elif record.expires is not None:
            await self.client.set(key, value, pxat=record.expires + KEY_TOMBSTONE_SECONDS * 1000)
        else:
            await self.client.set(key, value)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc


def redis_client(config: StoreConfig) -> Any:
    """A client for the configured Redis with bounded retries, so an outage becomes a quick 503."""
    options: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout_seconds,
        "socket_timeout": config.command_timeout_seconds,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        "health_check_interval": 30,
    }
    if config.cluster:
        from redis.asyncio.cluster import RedisCluster

        options.pop("health_check_interval")
        return RedisCluster.from_url(config.url, **options)
    return aioredis.Redis.from_url(config.url, **options)


def embedded_client(server: Any | None = None) -> Any:
    """An in-process Redis twin (fakeredis, with Lua) for a laptop without Redis. Never for replicas."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer())


async def open_store(config: StoreConfig, *, allow_embedded: bool, embedded_server: Any | None = None) -> Store:
    """The configured Redis; if unreachable and `allow_embedded`, the embedded twin (said loudly)."""
    if embedded_server is not None:
        return Store(embedded_client(embedded_server), config, embedded=True)
    store = Store(redis_client(config), config)
    try:
        await store.ping()
        return store
    except StoreUnavailable as exc:
        if not allow_embedded:
            log.error("Redis at %s is unreachable (%s); requests get 503 until it is back", _safe_url(config.url), exc.__cause__)
            return store
        await store.aclose()
    log.warning(
        "\n%s\n  No Redis at %s: using the EMBEDDED in-process store.\n"
        "  Conversations and keys live in this process only and vanish when it stops.\n"
        "  Fine on a laptop; never use it behind a load balancer. Set REDIS_URL for a real Redis.\n%s",
        "!" * 78, _safe_url(config.url), "!" * 78,
    )
    return Store(embedded_client(), config, embedded=True)


def _safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
