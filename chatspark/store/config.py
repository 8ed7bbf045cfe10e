"""What the store needs to be configured: the `[store]` table of config.toml."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Seconds = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # redis://, rediss:// or unix://; `cluster = true` for a Redis Cluster;
    # redis+sentinel://[:password@]host:port[,host:port...]/<master name>[/db] for a master found
    # through Sentinel (and found again after a failover); memory:// for the embedded in-process twin
    # (one process, nothing kept: a laptop, never replicas).
    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    # Replication is asynchronous: a master lost before its replicas copied a write takes the write
    # with it. With wait_replicas = N every call to Redis is followed, on its connection, by
    # WAIT N wait_timeout: nothing is acknowledged to a client until N replicas hold it, and a write
    # that is not replicated in time answers 503 (retryable). 0: no waiting (the default). In a
    # Cluster the commands of a call go to their nodes in one pipeline each, a WAIT at its end.
    wait_replicas: int = 0
    wait_timeout_seconds: Seconds = 1.0
    prefix: str = "cs"
    connect_timeout_seconds: Seconds = 1.0
    command_timeout_seconds: Seconds = 2.0
    # Connections per process; beyond them a command waits (up to the command timeout) for one.
    max_connections: PositiveInt = 512
    # A turn write is idempotent (keyed by its message id), so it is safe to send again.
    write_attempts: PositiveInt = 3
    # Stored turns per conversation; the oldest are dropped beyond this.
    max_turns: PositiveInt = 1_000
    # One turn at a time per conversation: the running turn holds a lease, renewed every third of
    # this while it runs; a crashed replica's lease lapses after at most this long.
    lease_seconds: Seconds = 30.0
    # How long a chat turn sent with an Idempotency-Key can be replayed.
    idempotency_seconds: PositiveInt = 24 * 3600
