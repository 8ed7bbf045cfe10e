"""The conversation and API-key store on Redis (or the embedded in-process twin for local use).

The only module that imports redis. Every failure to reach Redis becomes `StoreUnavailable`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from chatspark.config import StoreConfig
from chatspark.errors import ServiceUnavailable
from chatspark.redis_layout import (
    APPEND_TURN,
    AUTHENTICATE,
    CHARGE_CREDIT,
    HOLD_CREDIT,
    INDEX_CONVERSATION,
    DELETE_CONVERSATION,
    KEY_TOMBSTONE_SECONDS,
    RATE_MESSAGE,
    READ_TURNS,
    RELEASE_LEASE,
    RENEW_LEASE,
    Layout,
)

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
    created: int  # ms since the epoch, when the answer was complete
    prompt_tokens: int = 0
    completion_tokens: int = 0
    asked: int = 0  # ms since the epoch, when the message arrived (0 in turns stored before it existed)


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: int
    created: int
    updated: int
    turn_count: int
    ttl_seconds: int
    recent_turns: list[StoredTurn]  # oldest first, at most the number asked for


class ConversationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One row of an agent's conversation list."""

    id: str
    created: int
    updated: int
    ttl_seconds: int
    stored_turns: int


class TurnPage(msgspec.Struct, frozen=True, kw_only=True):
    """Stored turns of one conversation from a turn number on, with the ratings of its answers."""

    created: int
    updated: int
    ttl_seconds: int
    first_stored: int  # the number of the oldest turn still stored (older ones fell off the cap)
    total: int  # turns ever appended; the next turn gets this number
    turns: list[StoredTurn]
    ratings: dict[str, str]


class RateState(msgspec.Struct, frozen=True):
    """A key's rate limit after counting this request."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # until the oldest counted request leaves the window


class RateOutcome:
    RATED, NO_CONVERSATION, NO_MESSAGE, NOT_RATABLE = 1, 0, -1, -2


class AppendResult(msgspec.Struct, frozen=True):
    stored: bool  # False: this turn id was already stored by an earlier attempt
    turn_count: int
    created: int


class ConversationGone(Exception):
    """The conversation expired or was deleted while a turn ran."""


class LeaseTaken(Exception):
    """Another turn of the conversation is running (it holds the lease)."""

    def __init__(self, agent_id: int | None = None) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id  # the conversation's agent; None while its first turn runs


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
    rate_limit: int | None = None  # requests per minute; None: the configured default
    monthly_cap: int | None = None  # completed turns per month; None: the mode's default, 0: unlimited


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
        self._index_conversation = client.register_script(INDEX_CONVERSATION)
        self._read_turns = client.register_script(READ_TURNS)
        self._rate_message = client.register_script(RATE_MESSAGE)
        self._delete_conversation = client.register_script(DELETE_CONVERSATION)
        self._release_lease = client.register_script(RELEASE_LEASE)
        self._renew_lease = client.register_script(RENEW_LEASE)
        self._lease_ms = int(config.lease_seconds * 1000)
        self._authenticate = client.register_script(AUTHENTICATE)
        self._hold_credit = client.register_script(HOLD_CREDIT)
        self._charge_credit = client.register_script(CHARGE_CREDIT)

    async def ping(self) -> None:
        await self._call(self.client.ping)

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except RedisError:
            pass

    # -- conversations ---------------------------------------------------------------------------

    async def load_conversation(self, cid: str, recent: int, lease: str | None = None) -> Conversation | None:
        """The conversation's metadata and its last `recent` turns, in one round trip, taking the
        conversation's lease for token `lease` in the same trip. Raises LeaseTaken."""
        meta_key, turns_key, _ = self.layout.conversation(cid)

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            if lease is not None:
                pipe.set(self.layout.lease(cid), lease, nx=True, px=self._lease_ms)
            pipe.hgetall(meta_key)
            if recent > 0:
                pipe.lrange(turns_key, -recent, -1)
            return await pipe.execute()

        replies = await self._call(read)
        if lease is not None:
            leased, replies = replies[0], replies[1:]
        meta = replies[0]
        if lease is not None and not leased:
            raise LeaseTaken(int(meta[b"agent"]) if meta else None)
        if not meta:
            if lease is not None:
                await self.release_lease(cid, lease)
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

    async def take_lease(self, cid: str, token: str) -> None:
        """The lease of a conversation about to be created (no read needed). Raises LeaseTaken."""
        taken = await self._call(lambda: self.client.set(self.layout.lease(cid), token, nx=True, px=self._lease_ms))
        if not taken:
            raise LeaseTaken()

    async def release_lease(self, cid: str, token: str) -> None:
        await self._call(lambda: self._release_lease(keys=[self.layout.lease(cid)], args=[token]))

    async def renew_leases(self, keys_and_tokens: list[tuple[str, str]]) -> list[bool]:
        """Extends each held lease by a full term; False where the token no longer holds it."""
        if not keys_and_tokens:
            return []
        calls = [(self._renew_lease, [key], [token, self._lease_ms]) for key, token in keys_and_tokens]
        replies = await self._call(lambda: self._pipeline_scripts(calls))
        return [r == 1 for r in replies]

    async def append_turn(
        self,
        cid: str,
        agent_id: int,
        turn: StoredTurn,
        *,
        ttl_seconds: int,
        new: bool,
        lease: str = "",
    ) -> AppendResult:
        """Stores one complete turn and slides the conversation's TTL, in one round trip together
        with the agent's conversation index. Safe to retry (the turn id makes it a no-op).

        The index is written first in the pipeline: an entry whose conversation is not (yet)
        stored is skipped by listings and leaves the index when its expiry passes; a stored
        conversation missing from the index would be unlisted and undeletable.
        """
        keys = [*self.layout.conversation_keys(cid), self.layout.lease(cid)]
        args = [
            turn.id, _encoder.encode(turn), turn.created, ttl_seconds, self.config.max_turns, agent_id, int(new), lease
        ]
        index_keys = [self.layout.agent_conversations(agent_id), self.layout.agent_conversation_expiry(agent_id)]
        index_args = [cid, turn.created, turn.created + ttl_seconds * 1000, turn.created, int(new)]

        async def write() -> Any:
            replies = await self._pipeline_scripts(
                [(self._index_conversation, index_keys, index_args), (self._append_turn, keys, args)]
            )
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies[1]

        last_error: StoreUnavailable | None = None
        for attempt in range(self.config.write_attempts):
            try:
                status, count, created = await self._call(write)
                break
            except StoreUnavailable as exc:
                last_error = exc
                log.warning("turn write attempt %d failed: %s", attempt + 1, exc.__cause__ or exc)
        else:
            assert last_error is not None
            raise last_error
        if status == -3:
            raise LeaseTaken(agent_id)
        if status < 0:
            raise ConversationGone(cid)
        return AppendResult(stored=status == 1, turn_count=int(count), created=int(created))

    async def _pipeline_scripts(self, calls: list[tuple[Any, list[Any], list[Any]]]) -> list[Any]:
        """Several scripts in one round trip, by EVALSHA (a pipeline of registered scripts would
        first ask SCRIPT EXISTS each time); loads them once when Redis does not know them yet."""

        if self.config.cluster:
            # redis-py refuses scripts in cluster pipelines (and these keys live in different slots).
            return [await _reply_or_error(script(keys=keys, args=args)) for script, keys, args in calls]

        async def send() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)

        replies = await send()
        if any(isinstance(r, NoScriptError) for r in replies):  # first use, or a Redis restarted under us
            for script, _, _ in calls:
                await self.client.script_load(script.script)
            replies = await send()
        return replies

    async def list_conversations(
        self, agent_id: int, after: tuple[int, str] | None, limit: int
    ) -> list[ConversationInfo]:
        """Up to `limit` live conversations, newest first, strictly after (created, id) `after`.

        Sorted by (created desc, id desc), so a position stays valid while conversations arrive
        (newer ones sort before it) and expire (they just drop out).
        """
        index = self.layout.agent_conversations(agent_id)
        found: list[ConversationInfo] = []
        top: int | str = "+inf" if after is None else after[0]
        offset = 0  # entries already read at score `top` (ties)
        while len(found) < limit:
            batch = limit - len(found) + 8
            raw = await self._call(
                lambda t=top, o=offset, b=batch: self.client.zrevrangebyscore(
                    index, t, "-inf", start=o, num=b, withscores=True
                )
            )
            candidates = []
            for member, score in raw:
                cid, created = member.decode(), int(score)
                # Entries sharing the position's creation time sort by id, descending.
                if after is not None and created == after[0] and cid >= after[1]:
                    continue
                candidates.append((cid, created))
            found.extend(await self._conversation_rows(agent_id, candidates))
            if len(raw) < batch:
                break
            last = int(raw[-1][1])
            ties = sum(1 for _, score in raw if int(score) == last)
            offset = offset + ties if last == top else ties
            top = last
        return found[:limit]

    async def _conversation_rows(self, agent_id: int, candidates: list[tuple[str, int]]) -> list[ConversationInfo]:
        """The rows of the candidates that are stored."""
        if not candidates:
            return []

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cid, _ in candidates:
                meta, turns, _ = self.layout.conversation(cid)
                pipe.hmget(meta, "agent", "created", "updated", "ttl")
                pipe.llen(turns)
            return await pipe.execute()

        replies = await self._call(read)
        rows = []
        for i, (cid, _) in enumerate(candidates):
            (agent, created, updated, ttl), stored = replies[2 * i], replies[2 * i + 1]
            # Expired, or its first turn still running: not listed (the expiry index trims it).
            if agent is None or int(agent) != agent_id:
                continue
            rows.append(ConversationInfo(
                id=cid, created=int(created), updated=int(updated), ttl_seconds=int(ttl), stored_turns=int(stored)
            ))
        return rows

    async def read_turns(self, cid: str, agent_id: int, first: int = 0, count: int = -1) -> TurnPage | None:
        """Turns numbered `first` on (`count` of them, -1: all), atomically; None if no such conversation."""
        meta, turns, _ = self.layout.conversation(cid)
        keys = [meta, turns, self.layout.ratings(cid)]
        reply = await self._call(lambda: self._read_turns(keys=keys, args=[first, count, agent_id]))
        if not reply:
            return None
        created, updated, ttl, total, first_stored, raw_turns, raw_ratings = reply
        return TurnPage(
            created=int(created),
            updated=int(updated),
            ttl_seconds=int(ttl),
            first_stored=int(first_stored),
            total=int(total),
            turns=[_turn_decoder.decode(raw) for raw in raw_turns],
            ratings={raw_ratings[i].decode(): raw_ratings[i + 1].decode() for i in range(0, len(raw_ratings), 2)},
        )

    async def rate_message(self, cid: str, agent_id: int, message_id: str, rating: str | None) -> int:
        """A `RateOutcome` value."""
        meta, turns, tids = self.layout.conversation(cid)
        keys = [meta, tids, self.layout.ratings(cid), turns]
        return int(await self._call(lambda: self._rate_message(keys=keys, args=[message_id, rating or "", agent_id])))

    async def delete_conversation(self, cid: str, agent_id: int) -> bool:
        deleted = await self._call(
            lambda: self._delete_conversation(keys=list(self.layout.conversation_keys(cid)), args=[agent_id])
        )
        async def unindex() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(self.layout.agent_conversations(agent_id), cid)
            pipe.zrem(self.layout.agent_conversation_expiry(agent_id), cid)
            await pipe.execute()

        await self._call(unindex)
        return bool(deleted)

    async def delete_agent_conversations(self, agent_id: int) -> int:
        """Deletes every conversation of an agent and its index; returns how many were listed."""
        index = self.layout.agent_conversations(agent_id)
        deleted = 0
        while True:
            cids = [c.decode() for c in await self._call(lambda: self.client.zrange(index, 0, 199))]
            if not cids:
                break

            async def delete(batch: list[str] = cids) -> None:
                pipe = self.client.pipeline(transaction=False)
                for cid in batch:
                    pipe.delete(*self.layout.conversation_keys(cid))
                pipe.zrem(index, *batch)
                await pipe.execute()

            await self._call(delete)
            deleted += len(cids)
        await self._call(lambda: self.client.delete(index, self.layout.agent_conversation_expiry(agent_id)))
        return deleted

    async def cursor_secret(self) -> bytes:
        """The deployment's cursor-signing key, made once by whichever replica starts first."""
        key = self.layout.cursor_secret()
        await self._call(lambda: self.client.set(key, secrets.token_bytes(32), nx=True))
        return bytes(await self._call(lambda: self.client.get(key)))

    # -- API keys and their limits ---------------------------------------------------------------------------------

    async def authenticate(
        self, key_hash: str, *, window_ms: int, default_limit: int
    ) -> tuple[ApiKeyRecord | None, RateState | None]:
        """The key's record and, for a usable key, its rate limit with this request counted; one
        round trip."""
        keys = [self.layout.api_key(key_hash), self.layout.rate_log(key_hash)]
        args = [window_ms, default_limit, secrets.token_hex(8)]
        reply = await self._call(lambda: self._authenticate(keys=keys, args=args))
        if not reply or reply[0] is None:
            return None, None
        record = _key_decoder.decode(reply[0])
        if len(reply) == 1:
            return record, None
        _, allowed, limit, remaining, reset = reply
        return record, RateState(allowed == 1, int(limit), max(int(remaining), 0), max(int(reset), 0))

    async def hold_credit(self, key_hash: str, month: str, cap: int, token: str, hold_ms: int) -> bool:
        keys = list(self.layout.credits(key_hash, month))
        held, _ = await self._call(lambda: self._hold_credit(keys=keys, args=[cap, token, hold_ms]))
        return held == 1

    async def charge_credit(self, key_hash: str, month: str, token: str, ttl_seconds: int) -> int:
        keys = list(self.layout.credits(key_hash, month))
        return int(await self._call(lambda: self._charge_credit(keys=keys, args=[token, ttl_seconds])))

    async def release_credit(self, key_hash: str, month: str, token: str) -> None:
        _, held = self.layout.credits(key_hash, month)
        await self._call(lambda: self.client.zrem(held, token))

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
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("store call failed: %s: %s", type(exc).__name__, exc)
            raise StoreUnavailable() from exc


async def _reply_or_error(reply: Awaitable[Any]) -> Any:
    try:
        return await reply
    except RedisError as exc:
        return exc


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
        return RedisCluster.from_url(config.url, max_connections=config.max_connections, **options)
    # A blocking pool: past max_connections a request waits for a free connection (up to the
    # command timeout) instead of failing at once (redis-py's default pool raises at 100).
    pool = aioredis.BlockingConnectionPool.from_url(
        config.url, max_connections=config.max_connections, timeout=config.command_timeout_seconds, **options
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


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
