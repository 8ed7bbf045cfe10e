"""Every Redis key Chatspark writes, with its TTL, and the Lua scripts that touch them.

No other module formats a key. The keys of one conversation share the hash tag `{<cid>}` so a
turn's read and write each land on one Redis Cluster slot in one round trip.

| key                               | type   | TTL / owner                                             |
|-----------------------------------|--------|---------------------------------------------------------|
| {p}:conv:{<cid>}                  | hash   | agent, created, updated, turns, ttl; sliding agent TTL  |
| {p}:conv:{<cid>}:turns            | list   | one JSON turn per item, oldest first, capped; same TTL  |
| {p}:conv:{<cid>}:tids             | set    | ids of the stored turns (retried writes are no-ops)     |
| {p}:key:{<sha256 of api key>}     | string | JSON key record; TTL expiry+30 d, or 30 d once revoked, |
|                                   |        | else owned by `chatspark keys revoke`                   |
| {p}:keys                          | hash   | key id -> sha256, owned by `chatspark keys`             |
"""

from __future__ import annotations

# How long an expired or revoked key record stays, so a client hears EXPIRED/REVOKED, not INVALID.
KEY_TOMBSTONE_SECONDS = 30 * 24 * 3600


class Layout:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def conversation(self, cid: str) -> tuple[str, str, str]:
        """(meta, turns, turn ids) of one conversation, all in the slot of `{cid}`."""
        tag = f"{self.prefix}:conv:{{{cid}}}"
        return tag, f"{tag}:turns", f"{tag}:tids"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:key:{{{key_hash}}}"

    def api_key_index(self) -> str:
        return f"{self.prefix}:keys"


# Appends one turn atomically: the list, the id set, the counters and the sliding TTL move together.
# KEYS: meta, turns, tids. ARGV: turn id, turn JSON, now ms, ttl s, max turns, agent id, is_new.
# Returns {status, turns, created_ms}; status 1 = stored, 0 = already stored (a retried write),
# -1 = the conversation vanished (expired or deleted) while the turn ran, -2 = agent mismatch.
APPEND_TURN = """
local meta, turns, tids = KEYS[1], KEYS[2], KEYS[3]
local exists = redis.call('EXISTS', meta) == 1
if exists then
  if redis.call('HGET', meta, 'agent') ~= ARGV[6] then return {-2, 0, 0} end
elseif ARGV[7] ~= '1' then
  return {-1, 0, 0}
end
if redis.call('SADD', tids, ARGV[1]) == 0 then
  return {0, tonumber(redis.call('HGET', meta, 'turns')), tonumber(redis.call('HGET', meta, 'created'))}
end
redis.call('RPUSH', turns, ARGV[2])
local count = redis.call('HINCRBY', meta, 'turns', 1)
redis.call('HSETNX', meta, 'created', ARGV[3])
redis.call('HSET', meta, 'agent', ARGV[6], 'updated', ARGV[3], 'ttl', ARGV[4])
local excess = redis.call('LLEN', turns) - tonumber(ARGV[5])
while excess > 0 do
  local oldest = redis.call('LPOP', turns)
  redis.call('SREM', tids, cjson.decode(oldest)['id'])
  excess = excess - 1
end
local ttl = tonumber(ARGV[4])
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', turns, ttl)
redis.call('EXPIRE', tids, ttl)
return {1, count, tonumber(redis.call('HGET', meta, 'created'))}
"""
