"""The one seam to Redis: the client for a URL (Redis, Cluster, or the embedded `memory://` twin),
one way to run a command or a pipeline, one way to run scripts, every failure as `StoreUnavailable`.

Only this package imports redis; only this module touches a client.
"""

from __future__ import annotations

import asyncio
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
from chatspark.store.errors import NotReplicated, StoreUnavailable
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
        # (replicas, ms) of the WAIT that follows every call, or None (see StoreConfig.wait_replicas)
        self._wait = None if embedded or config.wait_replicas <= 0 else (
            config.wait_replicas, max(1, int(config.wait_timeout_seconds * 1000)))
        self._recording_client: Any = None  # cluster mode with _wait: see _recorder

    async def run(self, command: Callable[[Client], Awaitable[T]], *, blocking: bool = False) -> T:
        """One command (or any awaitable built from the client). `blocking`: a read that waits for
        data (XREAD BLOCK), left out of the latency metric. With `wait_replicas`, a single command is
        sent with its WAIT on one connection (a pipeline of two)."""
        if self._wait is None:
            return await self._call(command, blocking=blocking)

        async def durable(client: Client) -> Any:
            pipe = self._recorder() if self.config.cluster else client.pipeline(transaction=False)
            queued = command(pipe)
            if queued is not pipe:  # not one command but a function of its own (a group read): as is
                getattr(queued, "close", lambda: None)()
                return await command(client)
            if self.config.cluster:
                return _raise_first(await self._cluster_durably(client, pipe.command_stack))[0]
            return (await self._execute_durably(pipe))[0]

        return await self._call(durable, blocking=blocking)

    async def _call(self, command: Callable[[Client], Awaitable[T]], *, blocking: bool = False) -> T:
        started = time.perf_counter()
        try:
            result = await command(self._client)
        except NotReplicated as exc:
            metrics.stored(started, exc)
            raise
        except (RedisError, RedisClusterException, OSError) as exc:
            metrics.stored(started, exc)
            log.warning("store call failed: %s: %s", type(exc).__name__, exc)
            raise StoreUnavailable() from exc
        if not blocking:
            metrics.stored(started)
        return result

    async def _execute_durably(self, pipe: Any, raise_on_error: bool = True) -> list[Any]:
        """Executes `pipe` with a WAIT after its commands; their replies, or NotReplicated."""
        assert self._wait is not None
        pipe.wait(*self._wait)
        *replies, acknowledged = await pipe.execute(raise_on_error=raise_on_error)
        self._check_replicated([acknowledged])
        return replies

    def _check_replicated(self, answers: list[Any]) -> None:
        """Raises NotReplicated unless every WAIT answered at least `wait_replicas`."""
        assert self._wait is not None
        short = next((a for a in answers if isinstance(a, Exception) or int(a) < self._wait[0]), None)
        if short is not None:
            log.warning("a write reached %s of %d replicas within %d ms: answered 503", short, *self._wait)
            raise NotReplicated()

    async def pipeline(self, commands: Callable[[Client], object]) -> list[Any]:
        """Commands queued by `commands` on a non-transactional pipeline: one round trip when their
        keys share a slot (in a cluster, redis-py splits the pipeline per node)."""

        async def send(client: Client) -> list[Any]:
            if self._wait is not None and self.config.cluster:
                recorded = self._recorder()
                commands(recorded)
                return _raise_first(await self._cluster_durably(client, recorded.command_stack))
            pipe = client.pipeline(transaction=False)
            commands(pipe)
            if self._wait is not None:
                return await self._execute_durably(pipe)
            return await pipe.execute()

        return await self._call(send)

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._wait is not None:
            [reply] = await self.scripts([ScriptCall(script, keys, args)])
            if isinstance(reply, Exception):
                raise StoreUnavailable() from reply
            return reply
        return await self._call(lambda _: self._registered_script(script)(keys=list(keys), args=list(args)))

    async def scripts(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Several scripts in one round trip by EVALSHA; a reply is the script's result or the
        RedisError it raised. Loads the scripts when Redis does not know them yet (first use, or a
        Redis restarted under us)."""
        return await self._call(lambda client: self._send_scripts(client, calls))

    async def ping(self) -> None:
        await self._call(lambda client: client.ping())

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
            for sentinel in getattr(self._client, "chatspark_sentinels", ()):  # a Sentinel's own connections
                await sentinel.aclose()
        except RedisError:
            pass

    def _recorder(self) -> Any:
        """Something to queue commands on, to send them ourselves: a pipeline of a client that
        never connects (its `command_stack` holds each command's arguments)."""
        if self._recording_client is None:
            self._recording_client = aioredis.Redis()
        return self._recording_client.pipeline(transaction=False)

    async def _cluster_durably(self, client: Client, stack: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[Any]:
        """Cluster mode with `wait_replicas`: the commands grouped by the node that owns their slot,
        each group sent as one pipeline on one of that node's connections with a WAIT at its end
        (a redis-py cluster pipeline cannot carry it: WAIT has no key). Replies in order, errors as
        values; NotReplicated when a node's replicas did not confirm in time."""
        from redis.asyncio.cluster import PipelineCommand

        assert self._wait is not None
        await client.initialize()  # (a no-op once the client knows the cluster: its first command does this)
        groups: dict[str, tuple[Any, list[Any]]] = {}
        for position, (args, options) in enumerate(stack):
            slot = await client._determine_slot(*args)
            node = client.nodes_manager.get_node_from_slot(slot)
            groups.setdefault(node.name, (node, []))[1].append(PipelineCommand(position, *args, **options))
        for _, commands in groups.values():
            commands.append(PipelineCommand(-1, "WAIT", *self._wait))
        try:
            await asyncio.gather(*(node.execute_pipeline(commands) for node, commands in groups.values()))
        except (RedisError, OSError):
            await _relearn_slots(client)
            raise
        replies: list[Any] = [None] * len(stack)
        for _, commands in groups.values():
            for command in commands[:-1]:  # (the last is the WAIT)
                replies[command.position] = command.result
            moved = next((c.result for c in commands if isinstance(c.result, Exception) and _moved_or_down(c.result)), None)
            if moved is not None:
                await _relearn_slots(client)  # the slots moved (a failover): learn the new map
                raise StoreUnavailable() from moved
        self._check_replicated([commands[-1].result for _, commands in groups.values()])
        return replies

    def _registered_script(self, script: Script) -> Any:
        registered = self._registered.get(script.name)
        if registered is None:
            registered = self._registered[script.name] = self._client.register_script(script.source)
        return registered

    async def _send_scripts(self, client: Client, calls: Sequence[ScriptCall]) -> list[Any]:
        if self.config.cluster and self._wait is not None:  # EVAL: no NOSCRIPT to recover from per node
            stack = [(("EVAL", c.script.source, len(c.keys), *c.keys, *c.args), {}) for c in calls]
            return await self._cluster_durably(client, stack)
        registered = [self._registered_script(call.script) for call in calls]
        if self.config.cluster:
            # redis-py refuses scripts in cluster pipelines (and these keys may live in other slots).
            return [await _reply_or_error(r(keys=list(c.keys), args=list(c.args))) for r, c in zip(registered, calls)]

        async def send() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for r, call in zip(registered, calls, strict=True):
                pipe.evalsha(r.sha, len(call.keys), *call.keys, *call.args)
            if self._wait is not None:
                return await self._execute_durably(pipe, raise_on_error=False)
            return await pipe.execute(raise_on_error=False)

        replies = await send()
        if any(isinstance(r, NoScriptError) for r in replies):
            for r in registered:
                await client.script_load(r.script)
            replies = await send()
        return replies


def _raise_first(replies: list[Any]) -> list[Any]:
    """Replies of commands sent as one call: the first error is the call's."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _relearn_slots(client: Client) -> None:
    try:
        await client.nodes_manager.initialize()
    except (RedisError, RedisClusterException, OSError):
        pass  # the next call tries again


def _moved_or_down(error: Exception) -> bool:
    from redis.exceptions import AskError, ClusterDownError, ConnectionError, MovedError, TryAgainError

    return isinstance(error, (AskError, ClusterDownError, ConnectionError, MovedError, TryAgainError, OSError))


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
        # A WAIT blocks up to its timeout: the socket must outlast it.
        "socket_timeout": config.command_timeout_seconds + (config.wait_timeout_seconds if config.wait_replicas else 0),
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        "health_check_interval": 30,
    }
    if config.url.startswith(SENTINEL_SCHEME):
        return _sentinel_client(config, options)
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


SENTINEL_SCHEME = "redis+sentinel://"


def _sentinel_client(config: StoreConfig, options: dict[str, Any]) -> Client:
    """The master named in a `redis+sentinel://[:password@]host:port[,host:port]/<name>[/db]` URL, as
    the Sentinels say; after a failover, the next connection goes to the new master (redis-py's
    SentinelConnectionPool asks them again when a connection fails)."""
    from redis.asyncio.sentinel import Sentinel

    rest = config.url[len(SENTINEL_SCHEME):]
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    name, _, db = path.partition("/")
    if not hosts or not name:
        raise ValueError("a Sentinel URL is redis+sentinel://host:port[,host:port]/<master name>[/db]")
    sentinels = [(host.rpartition(":")[0] or host, int(host.rpartition(":")[2] or 26379)) for host in hosts.split(",")]
    password = auth.partition(":")[2] or None
    timeouts = {k: options[k] for k in ("socket_connect_timeout", "socket_timeout")}
    sentinel = Sentinel(sentinels, sentinel_kwargs=timeouts, **options)
    master = sentinel.master_for(name, db=int(db or 0), password=password, max_connections=config.max_connections)
    master.chatspark_sentinels = sentinel.sentinels  # closed with the master (Connection.aclose)
    return master


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
