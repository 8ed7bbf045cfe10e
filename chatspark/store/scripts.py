"""Every Lua script the store runs, beside the key layout they work on (`layout.py`).

Each is a `Script`; `Connection` registers them (the one place) and runs them by EVALSHA. The
comment above each names its KEYS and ARGV.
"""

from __future__ import annotations

from typing import NamedTuple


class Script(NamedTuple):
    name: str
    source: str


# How any script enqueues a webhook event atomically with its own writes: it takes the outbox
# (`Layout.webhook_outbox`, in its own slot in cluster mode) as a key and the event as four ARGV
# from `first + 1` on (type, agent id, ms, data JSON; `store/webhooks.py` EVENT_ARGS), type ''
# meaning no event. Prepend this to the script's source and call `enqueue_event(outbox, first)`.
ENQUEUE_EVENT_LUA = """
local function enqueue_event(outbox, first)
  if ARGV[first + 1] == '' then return end
  redis.call('XADD', outbox, 'MAXLEN', '~', 1000000, '*', 'e', ARGV[first + 1], 'a', ARGV[first + 2],
             't', ARGV[first + 3], 'd', ARGV[first + 4])
end
"""


# `conversation.ended` for the conversations of an agent whose expiry (the index's score) passed:
# at most `limit` leave both index sets, each reported into `outbox` (the agent's slot). The event
# is built here, as only this script knows which ones expired: `iso` writes the contract's time
# format (`clock.iso`) from epoch ms with Hinnant's civil-from-days.
END_EXPIRED_LUA = """
local function iso(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
                       math.floor((rem % 3600) / 60), rem % 60, ms % 1000)
end
local function end_expired(convs, expiry, outbox, now, agent, limit)
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  if #expired == 0 then return 0 end
  local cids = {}
  for i = 1, #expired, 2 do
    local cid, at = expired[i], tonumber(expired[i + 1])
    cids[#cids + 1] = cid
    local data = '{"conversationId":' .. cjson.encode(cid) .. ',"agentId":' .. agent .. ',"endedAt":"' .. iso(at) ..
                 '","reason":"expired"}'
    redis.call('XADD', outbox, 'MAXLEN', '~', 1000000, '*', 'e', 'conversation.ended', 'a', agent, 't', at, 'd', data)
  end
  redis.call('ZREM', convs, unpack(cids))
  redis.call('ZREM', expiry, unpack(cids))
  return #cids
end
"""


# Appends one turn atomically: the list, the id set, the counters and the sliding TTL move together,
# with the turn's webhook events: `conversation.started` (only when this write made the conversation),
# then `message.sent` for the user's message and for the assistant's (only when this write stored the
# turn: a retried write enqueues nothing again).
# KEYS: meta, turns, tids, ratings, lease, webhook outbox. ARGV: turn id, turn JSON, now ms, ttl s,
# max turns, agent id, is_new, lease token, then three events' four (EVENT_ARGS): started, user, assistant.
# Returns {status, turns, created_ms}; status 1 = stored, 0 = already stored (a
# retried write), -1 = the conversation vanished (expired or deleted) while the turn ran, -2 = agent
# mismatch, -3 = the turn's lease lapsed and another turn holds the conversation (fenced off).
APPEND_TURN = Script("append_turn", ENQUEUE_EVENT_LUA + """
local meta, turns, tids = KEYS[1], KEYS[2], KEYS[3]
if redis.call('SISMEMBER', tids, ARGV[1]) == 1 then
  return {0, tonumber(redis.call('HGET', meta, 'turns')), tonumber(redis.call('HGET', meta, 'created'))}
end
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[8] then return {-3, 0, 0} end
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
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('DEL', KEYS[5])
if not exists then enqueue_event(KEYS[6], 8) end
enqueue_event(KEYS[6], 12)
enqueue_event(KEYS[6], 16)
return {1, count, tonumber(redis.call('HGET', meta, 'created'))}
""")

# A sliding window on Redis' clock (so every replica agrees), shared by the scripts that count
# requests: drops what left the window, counts this request if it fits, and answers
# (allowed 1|0, remaining, ms until the oldest counted request leaves). Refused requests are not counted.
_SLIDING_WINDOW = """
local function count_request(log, now, window, limit, member)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local count = redis.call('ZCARD', log)
  local allowed = 0
  if count < limit then
    redis.call('ZADD', log, now, member)
    count = count + 1
    allowed = 1
  end
  redis.call('PEXPIRE', log, window)
  local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  local reset = 0
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  return allowed, limit - count, reset
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

# Looks up an API key and counts the request against its rate limit. Invalid, revoked and expired
# keys are not counted.
# KEYS: record, rate log. ARGV: window ms, default limit, a unique member for this request.
# Returns {record JSON or nil} or {record, allowed 1|0, limit, remaining, ms until the oldest leaves}.
AUTHENTICATE = Script("authenticate", _SLIDING_WINDOW + """
local raw = redis.call('GET', KEYS[1])
if not raw then return {false} end
local key = cjson.decode(raw)
if key['revoked'] ~= cjson.null and key['revoked'] ~= nil then return {raw} end
if key['expires'] ~= cjson.null and key['expires'] ~= nil and key['expires'] <= now then return {raw} end
local limit = tonumber(ARGV[2])
if key['rate_limit'] ~= cjson.null and key['rate_limit'] ~= nil then limit = tonumber(key['rate_limit']) end
local allowed, remaining, reset = count_request(KEYS[2], now, tonumber(ARGV[1]), limit, ARGV[3])
return {raw, allowed, limit, remaining, reset}
""")

# Counts one request against a rate limit (a widget visitor's, a client address's).
# KEYS: rate log. ARGV: window ms, limit, a unique member for this request.
# Returns {allowed 1|0, limit, remaining, ms until the oldest counted request leaves}.
COUNT_REQUEST = Script("count_request", _SLIDING_WINDOW + """
local limit = tonumber(ARGV[2])
local allowed, remaining, reset = count_request(KEYS[1], now, tonumber(ARGV[1]), limit, ARGV[3])
return {allowed, limit, remaining, reset}
""")

# Holds one credit for a turn about to run, if the month's completed plus held turns are below
# the cap. KEYS: used, held. ARGV: cap, token, hold ms. Returns {1|0, used}.
HOLD_CREDIT = Script("hold_credit", """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return {0, used} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, used}
""")

# Charges a completed turn: its hold becomes a used credit, once (a resent charge finds no hold and
# returns -1; so does a hold that lapsed, after `hold_seconds`). KEYS: used, held. ARGV: token, ttl s.
CHARGE_CREDIT = Script("charge_credit", """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return -1 end
local used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
""")

# Keeps an agent's conversation index and its daily analytics in step with a turn write (sent in
# the same pipeline, before APPEND_TURN, in the agent's slot).
# KEYS: by creation, by expiry, the day's stats hash, the counted turn ids, the webhook outbox.
# ARGV: cid, created ms, expires ms, now ms, is_new, turn id, unanswered 1|0, model, tokens,
# latency bucket ('' = unknown), stats TTL s, counted window ms, agent id.
# A new conversation enters both sets; a continuing one moves its expiry (XX: a deleted one is
# not re-added); conversations whose expiry passed leave both sets, at most 100 per write, each
# reported as `conversation.ended` (expired).
# The turn is counted once: its id enters the counted set (ids of the last window), and a retried
# write of the same turn finds it there and counts nothing.
INDEX_CONVERSATION = Script("index_conversation", END_EXPIRED_LUA + """
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
end
local ended = end_expired(KEYS[1], KEYS[2], KEYS[5], tonumber(ARGV[4]), ARGV[13], 100)
local window = tonumber(ARGV[12])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]) - window)
if redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[6]) == 1 then
  redis.call('PEXPIRE', KEYS[4], window)
  local stats = KEYS[3]
  redis.call('HINCRBY', stats, 'messages', 2)
  if ARGV[5] == '1' then redis.call('HINCRBY', stats, 'conversations', 1) end
  if ARGV[7] == '1' then redis.call('HINCRBY', stats, 'unanswered', 1) end
  redis.call('HINCRBY', stats, 'tokens:' .. ARGV[8], ARGV[9])
  if ARGV[10] ~= '' then redis.call('HINCRBY', stats, 'lat:' .. ARGV[10], 1) end
  redis.call('EXPIRE', stats, ARGV[11])
end
return ended
""")

# Reports and unindexes an agent's expired conversations (the sweep every replica runs, so an agent
# with no new turns still reports them). KEYS: by creation, by expiry, webhook outbox.
# ARGV: now ms, agent id, at most. Returns how many ended.
END_EXPIRED = Script("end_expired", END_EXPIRED_LUA + """
return end_expired(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]))
""")

# Deletes a lease only if this token holds it. KEYS: lease. ARGV: token.
RELEASE_LEASE = Script("release_lease", """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# Extends a lease only if this token still holds it. KEYS: lease. ARGV: token, ms.
RENEW_LEASE = Script("renew_lease", """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")

# Claims an idempotent chat turn. KEYS: record, events, lease. ARGV: body digest, token, lease ms, ttl s.
# Returns {state, run}: state 'new' (run it), 'running' (another request runs it: follow), 'done'
# (replay), 'conflict'; run names this record's life (the first claimant's token; '' if unknown), the
# same for every claim until the record expires, so a run and its followers can derive ids from it.
# A turn whose runner vanished (lease lapsed) or that failed is run again by the next claim.
CLAIM_TURN = Script("claim_turn", """
local record = redis.call('HMGET', KEYS[1], 'body', 'state', 'run')
local run = record[3] or ''
if record[1] and record[1] ~= ARGV[1] then return {'conflict', run} end
if record[2] == 'done' then return {'done', run} end
if record[2] == 'running' and redis.call('EXISTS', KEYS[3]) == 1 then return {'running', run} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'body', ARGV[1], 'state', 'running')
redis.call('HSETNX', KEYS[1], 'run', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return {'new', redis.call('HGET', KEYS[1], 'run')}
""")

# Appends one piece of an idempotent turn's answer, if this runner still holds the turn.
# KEYS: record, events, lease. ARGV: token, frame, event id, final status ('' until the end), ttl s.
PUBLISH_TURN = Script("publish_turn", """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], '*', 'f', ARGV[2], 'i', ARGV[3], 's', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if ARGV[4] ~= '' then
  if ARGV[4] == '200' then redis.call('HSET', KEYS[1], 'state', 'done') else redis.call('HSET', KEYS[1], 'state', 'failed') end
  redis.call('DEL', KEYS[3])
end
return 1
""")

# Forgets an idempotent turn that ended before it started (an error answered before any byte).
# KEYS: record, events, lease. ARGV: token.
FORGET_TURN = Script("forget_turn", """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
""")

# One page of a conversation's turns by absolute turn number, consistent with concurrent appends.
# KEYS: meta, turns, ratings. ARGV: first turn number wanted, how many (-1: all), agent id.
# Returns {} when the conversation is gone or another agent's, else
# {created, updated, ttl, total appended, first stored turn number, {turns...}, {ratings...}}.
READ_TURNS = Script("read_turns", """
local meta = redis.call('HMGET', KEYS[1], 'agent', 'created', 'updated', 'ttl', 'turns')
if not meta[1] or meta[1] ~= ARGV[3] then return {} end
local total = tonumber(meta[5])
local first = total - redis.call('LLEN', KEYS[2])
local start = math.max(tonumber(ARGV[1]) - first, 0)
local stop = -1
if tonumber(ARGV[2]) >= 0 then stop = start + tonumber(ARGV[2]) - 1 end
return {meta[2], meta[3], meta[4], total, first, redis.call('LRANGE', KEYS[2], start, stop),
        redis.call('HGETALL', KEYS[3])}
""")

# Rates one assistant message. KEYS: meta, tids, ratings, turns. ARGV: message id, rating ('' clears), agent.
# Returns {1, the rating it replaced or ''} rated, {0} no such conversation, {-1} no such message,
# {-2} a user message (not ratable).
RATE_MESSAGE = Script("rate_message", """
if redis.call('HGET', KEYS[1], 'agent') ~= ARGV[3] then return {0} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  for _, raw in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
    if cjson.decode(raw)['user_id'] == ARGV[1] then return {-2} end
  end
  return {-1}
end
local previous = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], redis.call('PTTL', KEYS[1]))
end
return {1, previous}
""")

# Deletes one conversation if it belongs to the agent, with its `conversation.ended` event.
# KEYS: meta, turns, tids, ratings, webhook outbox. ARGV: agent, then the event's four (EVENT_ARGS).
DELETE_CONVERSATION = Script("delete_conversation", ENQUEUE_EVENT_LUA + """
if redis.call('HGET', KEYS[1], 'agent') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
enqueue_event(KEYS[5], 1)
return 1
""")

# Seeds one configured agent once: never clobbers an edited agent, never revives a deleted one.
# KEYS: agent, index, seq, seeded. ARGV: id, JSON, created ms.
SEED_AGENT = Script("seed_agent", """
if redis.call('SADD', KEYS[4], ARGV[1]) == 0 then return 0 end
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[1]) > seq then redis.call('SET', KEYS[3], ARGV[1]) end
return 1
""")

# Stores a new agent under an id already taken from seq, honouring an idempotency record.
# KEYS: agent, index, idempotency key. ARGV: id, JSON, created ms, body digest, ttl s, '1' when the
# request carried an Idempotency-Key (else KEYS[3] is a placeholder in the same slot, untouched).
# Returns {1, id} created, {0, earlier id} replayed, {-1, 0} the key was used with another body.
CREATE_AGENT = Script("create_agent", """
if ARGV[6] == '1' then
  local earlier = redis.call('GET', KEYS[3])
  if earlier then
    local digest, id = string.match(earlier, '^(%x+):(%d+)$')
    if digest ~= ARGV[4] then return {-1, 0} end
    return {0, tonumber(id)}
  end
  redis.call('SET', KEYS[3], ARGV[4] .. ':' .. ARGV[1], 'EX', ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {1, tonumber(ARGV[1])}
""")

# Replaces an agent only if it still exists (a PATCH racing a DELETE must not revive it), and
# enqueues its `agent.updated` event in the same step.
# KEYS: agent, webhook outbox. ARGV: JSON, then the event's four (EVENT_ARGS; type '' = none).
UPDATE_AGENT = Script("update_agent", ENQUEUE_EVENT_LUA + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
enqueue_event(KEYS[2], 1)
return 1
""")

# KEYS: agent, index. ARGV: id.
DELETE_AGENT = Script("delete_agent", """
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return existed
""")

# Adds a training source, or re-trains the agent's source of the same slug, as `pending` with a
# new content generation (its job is already in the ingestion stream). A re-trained source keeps
# its live generation answering until the new one completes.
# KEYS: slugs, sources, record (new id), data (new id), idempotency, record (existing id), data (existing id).
# ARGV: slug, new id, generation, type, url, now ms, data ('' unless text), body digest ('' = no key),
#       idempotency ttl s, existing id ('' = none seen).
# Returns {1, id} created, {2, id} re-trained, {0, id} idempotent replay, {-1, 0} key used with
# another body, {-2, id} the slug's id is not the one the caller saw (call again).
ADD_SOURCE = Script("add_source", """
if ARGV[8] ~= '' then
  local earlier = redis.call('GET', KEYS[5])
  if earlier then
    local digest, id = string.match(earlier, '^(%x+):(%d+)$')
    if digest ~= ARGV[8] then return {-1, 0} end
    return {0, tonumber(id)}
  end
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if (existing or '') ~= ARGV[10] then return {-2, tonumber(existing or '0')} end
local id, record, data, outcome = ARGV[2], KEYS[3], KEYS[4], 1
if existing then
  id, record, data, outcome = existing, KEYS[6], KEYS[7], 2
else
  redis.call('HSET', KEYS[1], ARGV[1], id)
  redis.call('ZADD', KEYS[2], ARGV[6], id)
  redis.call('HSET', record, 'id', id, 'source', ARGV[1], 'created', ARGV[6], 'live', '0', 'count', '', 'title', '')
end
redis.call('HSET', record, 'type', ARGV[4], 'url', ARGV[5], 'status', 'pending', 'error', '', 'updated', ARGV[6],
           'pending', ARGV[3])
if ARGV[4] == 'text' then redis.call('SET', data, ARGV[7]) else redis.call('DEL', data) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8] .. ':' .. id, 'EX', ARGV[9]) end
return {outcome, tonumber(id)}
""")

# A job starts on its generation. KEYS: record. ARGV: generation, now ms.
# Returns 1 (run it), 0 (no record, or it does not show this generation yet: its add may still be
# on the way), -1 (stale: re-trained again, or this generation finished).
START_JOB = Script("start_job", """
local state = redis.call('HMGET', KEYS[1], 'pending', 'live')
if not state[1] then return 0 end
local gen, pending, live = tonumber(ARGV[1]), tonumber(state[1]), tonumber(state[2])
if pending == gen then
  redis.call('HSET', KEYS[1], 'status', 'processing', 'updated', ARGV[2])
  return 1
end
if pending < gen and live < gen then return 0 end
return -1
""")

# Stores chunks of a generation still pending (a retried job writes the same fields: no duplicates).
# KEYS: record, chunks. ARGV: generation, n, blob, n, blob, ...
STORE_CHUNKS = Script("store_chunks", """
if redis.call('HGET', KEYS[1], 'pending') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
""")

# The generation's chunks replace the live ones in one step (no moment with neither).
# KEYS: record, new chunks, old chunks, version, data, webhook outbox. ARGV: generation, old generation, title,
# now ms, chunk count, then the `training.completed` event's four (EVENT_ARGS), enqueued only when swapped.
# Returns 1 swapped, 0 stale (its chunks are dropped), -1 the live generation moved (call again).
COMPLETE_JOB = Script("complete_job", ENQUEUE_EVENT_LUA + """
local state = redis.call('HMGET', KEYS[1], 'pending', 'live')
if state[1] ~= ARGV[1] then
  if not state[1] or tonumber(state[1]) ~= tonumber(ARGV[1]) then redis.call('DEL', KEYS[2]) end
  return 0
end
if state[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'live', ARGV[1], 'pending', '0', 'status', 'completed', 'error', '',
           'count', ARGV[5], 'title', ARGV[3], 'updated', ARGV[4])
if ARGV[2] ~= '0' then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[5])
redis.call('INCR', KEYS[4])
enqueue_event(KEYS[6], 5)
return 1
""")

# A job failed for good: the source says why; a live generation keeps answering.
# KEYS: record, chunks, data, webhook outbox. ARGV: generation, error, now ms, then the `training.failed`
# event's four (EVENT_ARGS), enqueued only when this failure is recorded.
FAIL_JOB = Script("fail_job", ENQUEUE_EVENT_LUA + """
if redis.call('HGET', KEYS[1], 'pending') ~= ARGV[1] then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('HSET', KEYS[1], 'pending', '0', 'status', 'failed', 'error', ARGV[2], 'updated', ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3])
enqueue_event(KEYS[4], 3)
return 1
""")

# Deletes a source with all its content; answers stop citing it at once (the version moves).
# KEYS: record, slugs, sources, live chunks, pending chunks, pending data, version. ARGV: id, live, pending.
# Returns 0 when the record changed generation meanwhile (call again), 1 deleted, -1 no such source.
DELETE_SOURCE = Script("delete_source", """
local state = redis.call('HMGET', KEYS[1], 'source', 'live', 'pending')
if not state[1] then return -1 end
if state[2] ~= ARGV[2] or state[3] ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[2], state[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6])
redis.call('INCR', KEYS[7])
return 1
""")

# Stores a new lead: its record, its place in the agent's list, the day's count and the idempotency
# entry move together. Expired idempotency entries (at most 100) leave first.
# KEYS: index, records, idempotency entries, their expiry, daily counts, webhook outbox.
# ARGV: lead id, JSON, created ms, UTC day, idempotency digest ('' = no key), body digest,
#       entry expiry ms, now ms, then the `lead.captured` event's four (EVENT_ARGS), enqueued only
#       when the lead is created.
# Returns {1, JSON} created, {0, JSON of the earlier lead} replayed, {-1, ''} the key was used with
# another body or its lead was deleted since.
ADD_LEAD = Script("add_lead", ENQUEUE_EVENT_LUA + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[8], 'LIMIT', 0, 100)
if #expired > 0 then
  redis.call('HDEL', KEYS[3], unpack(expired))
  redis.call('ZREM', KEYS[4], unpack(expired))
end
if ARGV[5] ~= '' then
  local earlier = redis.call('HGET', KEYS[3], ARGV[5])
  if earlier then
    local digest, id = string.match(earlier, '^([^:]*):(.*)$')
    local raw = redis.call('HGET', KEYS[2], id)
    if digest ~= ARGV[6] or not raw then return {-1, ''} end
    return {0, raw}
  end
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6] .. ':' .. ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[5])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
enqueue_event(KEYS[6], 8)
return {1, ARGV[2]}
""")

# One page of an agent's leads, newest first by (created, id) — the order of ZREVRANGEBYSCORE —
# strictly after the position (created ms, id) the previous page ended at.
# KEYS: index, records. ARGV: created ms of the position ('+inf': first page), its id, how many.
# Returns the JSON records, in order.
READ_LEADS = Script("read_leads", """
local limit = tonumber(ARGV[3])
local ids, offset = {}, 0
while #ids < limit do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', offset, limit)
  for i = 1, #batch, 2 do
    if ARGV[2] == '' or tonumber(batch[i + 1]) ~= tonumber(ARGV[1]) or batch[i] < ARGV[2] then
      if #ids < limit then ids[#ids + 1] = batch[i] end
    end
  end
  if #batch < 2 * limit then break end
  offset = offset + limit
end
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
""")

# Erases one lead: its record and list entry go; its idempotency entry (if any) keeps only a
# tombstone, so a retried create answers 409 instead of capturing the person again.
# KEYS: index, records, idempotency entries. ARGV: lead id. Returns 1 deleted, 0 no such lead.
DELETE_LEAD = Script("delete_lead", """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local idem = cjson.decode(raw)['idem']
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if type(idem) == 'string' and idem ~= '' and redis.call('HEXISTS', KEYS[3], idem) == 1 then
  redis.call('HSET', KEYS[3], idem, '-:' .. ARGV[1])
end
return 1
""")

# --- webhooks ---------------------------------------------------------------------------------

# Enqueues one event, for a producer that has no script of its own. KEYS: outbox. ARGV: EVENT_ARGS.
ENQUEUE_EVENT = Script("enqueue_event", ENQUEUE_EVENT_LUA + """
enqueue_event(KEYS[1], 0)
return 1
""")

# Registers a webhook or replaces one that still exists (a PATCH racing a DELETE must not revive it).
# KEYS: records, failures, inactive. ARGV: id, JSON, 'new'|'update', active ('1' re-enables and
# forgets past failures, '0' deactivates, '' leaves it), now ms.
SAVE_WEBHOOK = Script("save_webhook", """
if ARGV[3] == 'update' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
elseif ARGV[4] == '0' and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
end
return 1
""")

# KEYS: records, failures, inactive, its deliveries. ARGV: id. Returns 1 deleted, 0 no such webhook.
DELETE_WEBHOOK = Script("delete_webhook", """
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return existed
""")

# Fans one event out into a delivery per matching webhook, once: the outbox entry is deleted here
# (ARGV[1] 'x', KEYS[1] the outbox), or, when the outbox is in another slot (cluster mode), the
# event id is marked relayed (ARGV[1] 'z', KEYS[1] the relayed set; the caller deletes the entry after).
# KEYS: outbox or relayed set, queue, then per delivery: its record, the webhook's deliveries.
# ARGV: mode, entry or event id, now ms, keep s, then per delivery: id, webhook id, event type, body.
# Returns 1 fanned out, 0 already fanned out by another replica.
FAN_OUT = Script("fan_out", """
local now, keep = tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[1] == 'x' then
  if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
else
  if redis.call('ZADD', KEYS[1], 'NX', now, ARGV[2]) == 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
end
local k, a = 3, 5
while KEYS[k] do
  local id = ARGV[a]
  redis.call('HSET', KEYS[k], 'id', id, 'webhook', ARGV[a + 1], 'event', ARGV[a + 2], 'body', ARGV[a + 3],
             'created', now, 'status', 'pending', 'attempts', 0, 'code', '', 'next', now)
  redis.call('EXPIRE', KEYS[k], keep)
  redis.call('ZADD', KEYS[k + 1], now, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now - keep * 1000)
  redis.call('EXPIRE', KEYS[k + 1], keep)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000000, '*', 'd', id, 'w', ARGV[a + 1])
  k, a = k + 2, a + 4
end
return 1
""")

# Clears the hints of outboxes a relay drained (cluster mode), unless a producer hinted again since
# it read them. KEYS: the outbox registry. ARGV: outbox, hint read, outbox, hint read, ...
CLEAR_HINTS = Script("clear_hints", """
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or '0') == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[i])
  end
end
return 1
""")

# Moves retries whose time has come back to the queue. KEYS: retry zset, queue. ARGV: now ms, at most.
# A retry's member is '<delivery id>/<webhook id>', as the queue's entries carry both.
MOVE_DUE = Script("move_due", """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local id, webhook = string.match(member, '^([^/]+)/(.*)$')
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000000, '*', 'd', id, 'w', webhook)
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return #due
""")

# Records how an attempt ended and takes its entry off the queue (acknowledged and deleted).
# KEYS: delivery record, queue, retry zset, failures, inactive.
# ARGV: entry id, group, outcome, status code ('' none), next attempt ms, now ms, webhook id, deactivate after.
# Outcomes: 'ok' delivered; 'retry' failed, again at ARGV[5]; 'failed' failed, no retry left; 'drop' not
# attempted (webhook gone or inactive); 'defer' not attempted now (its webhook is busy here), again at ARGV[5];
# 'skip' a stale entry (its delivery already finished): only taken off the queue.
# Returns -1 when the entry was acknowledged already (a replica that took it over finished it), 2 when
# this failure deactivated the webhook, else 1 (0: the record expired).
RECORD_ATTEMPT = Script("record_attempt", """
if redis.call('XACK', KEYS[2], ARGV[2], ARGV[1]) == 0 then return -1 end
redis.call('XDEL', KEYS[2], ARGV[1])
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return 0 end
local outcome = ARGV[3]
if outcome == 'skip' then return 1 end
if outcome == 'defer' then
  redis.call('ZADD', KEYS[3], ARGV[5], id .. '/' .. ARGV[7])
  return 1
end
if outcome == 'drop' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'next', '')
  return 1
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'code', ARGV[4])
if outcome == 'ok' then
  redis.call('HSET', KEYS[1], 'status', 'delivered', 'next', '')
  redis.call('HDEL', KEYS[4], ARGV[7])
  return 1
end
if outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'next', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[5], id .. '/' .. ARGV[7])
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'next', '')
local failures = redis.call('HINCRBY', KEYS[4], ARGV[7], 1)
if failures >= tonumber(ARGV[8]) and redis.call('HSETNX', KEYS[5], ARGV[7], ARGV[6]) == 1 then return 2 end
return 1
""")
