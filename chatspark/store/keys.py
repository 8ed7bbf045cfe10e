"""API keys (stored by hash only) and their rate limits, counted on Redis' clock across replicas."""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection
from chatspark.store.layout import KEY_TOMBSTONE_SECONDS, Layout

KeyMode = Literal["live", "test"]


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    hash: str
    mode: KeyMode
    scopes: list[str] | None = None  # None: every scope, including ones added later
    agents: list[int] | None = None  # None: every agent
    created: int
    expires: int | None = None  # ms since the epoch
    revoked: int | None = None
    name: str = ""
    rate_limit: int | None = None  # requests per minute; None: the configured default
    monthly_cap: int | None = None  # completed turns per month; None: the mode's default, 0: unlimited


class RateState(msgspec.Struct, frozen=True):
    """A key's rate limit after counting this request."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # until the oldest counted request leaves the window


_key_decoder = msgspec.json.Decoder(ApiKeyRecord)
_encoder = msgspec.json.Encoder()


class KeyStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout

    async def authenticate(
        self, key_hash: str, *, window_ms: int, default_limit: int
    ) -> tuple[ApiKeyRecord | None, RateState | None]:
        """The key's record and, for a usable key, its rate limit with this request counted; one
        round trip."""
        keys = [self.layout.api_key(key_hash), self.layout.rate_log(key_hash)]
        reply = await self.redis.script(scripts.AUTHENTICATE, keys, [window_ms, default_limit, secrets.token_hex(8)])
        if not reply or reply[0] is None:
            return None, None
        record = _key_decoder.decode(reply[0])
        if len(reply) == 1:
            return record, None
        _, allowed, limit, remaining, reset = reply
        return record, RateState(allowed == 1, int(limit), max(int(remaining), 0), max(int(reset), 0))

    async def get(self, key_hash: str) -> ApiKeyRecord | None:
        raw = await self.redis.run(lambda r: r.get(self.layout.api_key(key_hash)))
        return None if raw is None else _key_decoder.decode(raw)

    async def put(self, record: ApiKeyRecord) -> None:
        await self._write(record)
        await self.redis.run(lambda r: r.hset(self.layout.api_key_index(), record.id, record.hash))

    async def list(self) -> list[ApiKeyRecord]:
        index = await self.redis.run(lambda r: r.hgetall(self.layout.api_key_index()))
        records = []
        for key_id, key_hash in sorted(index.items()):
            record = await self.get(key_hash.decode())
            if record is None:  # its TTL ran out: drop it from the index too
                await self.redis.run(lambda r, k=key_id: r.hdel(self.layout.api_key_index(), k))
            else:
                records.append(record)
        return records

    async def find(self, key_id: str) -> ApiKeyRecord | None:
        key_hash = await self.redis.run(lambda r: r.hget(self.layout.api_key_index(), key_id))
        return None if key_hash is None else await self.get(key_hash.decode())

    async def revoke(self, record: ApiKeyRecord, now_ms: int) -> ApiKeyRecord:
        revoked = msgspec.structs.replace(record, revoked=now_ms)
        await self._write(revoked)
        return revoked

    async def _write(self, record: ApiKeyRecord) -> None:
        key = self.layout.api_key(record.hash)
        value = _encoder.encode(record)
        # An expired or revoked record stays a while, so its client hears EXPIRED/REVOKED, not INVALID.
        ends = record.revoked if record.revoked is not None else record.expires
        if ends is None:
            await self.redis.run(lambda r: r.set(key, value))
        else:
            await self.redis.run(lambda r: r.set(key, value, pxat=ends + KEY_TOMBSTONE_SECONDS * 1000))
