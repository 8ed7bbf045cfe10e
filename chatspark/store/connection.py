"""The one seam to Redis: the client for a URL (Redis, Cluster, or the embedded `memory://` twin),
one way to run a command or a pipeline, one way to run scripts, every failure as `StoreUnavailable`.

Only this package imports redis; only this module touches a client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from chatspark import metrics
from chatspark.store.config import StoreConfig
from chatspark.store.errors import StoreUnavailable
from chatspark.store.scripts import Script

log = logging.getLogger("chatspark.store")
T = TypeVar("T")

MEMORY_URL = "memory://"

# What a command callback receives: a redis-py client (or pipeline); typed loosely because redis-py's
# async client, cluster client and fakeredis share the command methods but no useful base type.
Client = Any


class ScriptCall(NamedTuple):
    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


class Connection:
    def __init__(self, client: Client, config: StoreConfig, *, embedded: bool) -> None:
        self._client = client
        self.config = config
        self.embedded = embedded  # the in-process twin: nothing outlives this process
        self._registered: dict[str, Any] = {}  # script name -> redis-py Script (knows its SHA)

    async def run(self, command: Callable[[Client], Awaitable[T]], *, blocking: bool = False) -> T:
        """One command (or any awaitable built from the client). `blocking`: a read that waits for
        data (XREAD BLOCK), left out of the latency metric."""
        started = time.perf_counter()
        try:
            result = await command(self._client)
        except (RedisError, RedisClusterException, OSError) as exc:
            metrics.stored(started, exc)
            log.warning("store call failed: %s: %s", type(exc).__name__, exc)
            raise StoreUnavailable() from exc
        if not blocking:
            metrics.stored(started)
        return result

    async def pipeline(self, commands: Callable[[Client], object]) -> list[Any]:
        """Commands queued by `commands` on a non-transactional pipeline: one round trip when their
        keys share a slot (in a cluster, redis-py splits the pipeline per node)."""

        async def send(client: Client) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            commands(pipe)
            return await pipe.execute()

        return await self.run(send)

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self.run(lambda _: self._registered_script(script)(keys=list(keys), args=list(args)))

    async def scripts(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Several scripts in one round trip by EVALSHA; a reply is the script's result or the
        RedisError it raised. Loads the scripts when Redis does not know them yet (first use, or a
        Redis restarted under us)."""
        return await self.run(lambda client: self._send_scripts(client, calls))

    async def ping(self) -> None:
        await self.run(lambda client: client.ping())

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except RedisError:
            pass

    def _registered_script(self, script: Script) -> Any:
        registered = self._registered.get(script.name)
        if registered is None:
            registered = self._registered[script.name] = self._client.register_script(script.source)
        return registered

    async def _send_scripts(self, client: Client, calls: Sequence[ScriptCall]) -> list[Any]:
        registered = [self._registered_script(call.script) for call in calls]
        if self.config.cluster:
            # redis-py refuses scripts in cluster pipelines (and these keys may live in other slots).
            return [await _reply_or_error(r(keys=list(c.keys), args=list(c.args))) for r, c in zip(registered, calls)]

        async def send() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for r, call in zip(registered, calls, strict=True):
                pipe.evalsha(r.sha, len(call.keys), *call.keys, *call.args)
            return await pipe.execute(raise_on_error=False)

        replies = await send()
        if any(isinstance(r, NoScriptError) for r in replies):
            for r in registered:
                await client.script_load(r.script)
            replies = await send()
        return replies


async def _reply_or_error(reply: Awaitable[Any]) -> Any:
    try:
        return await reply
    except RedisError as exc:
        return exc


def connect(config: StoreConfig) -> Connection:
    """A connection for `config.url` (no I/O yet): `memory://` is the embedded twin."""
    if config.url.startswith(MEMORY_URL):
        return Connection(_embedded_client(), config, embedded=True)
    return Connection(_redis_client(config), config, embedded=False)


def _redis_client(config: StoreConfig) -> Client:
    """A client with bounded retries, so an outage becomes a quick 503."""
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


def _embedded_client() -> Client:
    """An in-process Redis twin (fakeredis, with Lua) for a laptop without Redis. Never for replicas."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


def safe_url(url: str) -> str:
    """The URL without a password, for logs and banners."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
