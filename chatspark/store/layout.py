"""Every Redis key Chatspark writes, with its type and TTL or owner; the scripts are in `scripts.py`.

No other module formats a key (import-linter keeps the HTTP layer off this module). The keys of
one conversation share the hash tag `{<cid>}` so a turn's read and write each land on one Redis
Cluster slot in one round trip.

| key                               | type   | TTL / owner                                             |
|-----------------------------------|--------|---------------------------------------------------------|
| {p}:conv:{<cid>}                  | hash   | agent, created, updated, turns, ttl; sliding agent TTL  |
| {p}:conv:{<cid>}:turns            | list   | one JSON turn per item, oldest first, capped; same TTL  |
| {p}:conv:{<cid>}:tids             | set    | ids of the stored turns (retried writes are no-ops)     |
| {p}:conv:{<cid>}:ratings          | hash   | assistant message id -> rating; same TTL                |
| {p}:conv:{<cid>}:lease            | string | token of the running turn; PX lease, renewed while it   |
|                                   |        | runs, deleted by the turn's write or its release        |
| {p}:turn:{<sha256>}               | hash   | idempotent chat turn: body digest, state; TTL 24 h      |
| {p}:turn:{<sha256>}:events        | stream | its answer (SSE frames or the JSON body); TTL 24 h      |
| {p}:turn:{<sha256>}:lease         | string | token of the replica running it; PX lease, renewed      |
| {p}:agent:{<id>}:convs            | zset   | cid scored by creation ms (the list order); owned by    |
|                                   |        | the agent (deleted with it); trimmed with the next one  |
| {p}:agent:{<id>}:expiry           | zset   | cid scored by when it expires (moved by every turn);    |
|                                   |        | expired entries leave both sets at each turn write      |
| {p}:agent:{<id>}:stats:<day>      | hash   | the agent's analytics of one UTC day (YYYY-MM-DD):      |
|                                   |        | messages, conversations, unanswered, tokens:<model>,    |
|                                   |        | lat:<ms bucket>; written with each turn's index; TTL    |
|                                   |        | 400 days (not deleted with the agent: its id is never   |
|                                   |        | reused; they expire)                                    |
| {p}:agent:{<id>}:counted          | zset   | turn ids counted in the stats in the last 10 minutes,   |
|                                   |        | scored by ms (a retried write counts once); PX 10 min   |
| {p:agents}:agent:<id>             | string | JSON agent; owned by DELETE /agents/{id}                |
| {p:agents}:index                  | zset   | agent id scored by creation ms; owned with the agents   |
| {p:agents}:seq                    | string | last agent id handed out (never reused)                 |
| {p:agents}:seeded                 | set    | config agent ids seeded once (deleted stay deleted)     |
| {p:agents}:idem:<sha256>          | string | POST /agents idempotency record; TTL 24 h               |
| {p}:cursor-secret                 | string | HMAC key of list cursors; a singleton, never expires    |
| {p}:kn:{<agent>}:sources          | zset   | training id scored by creation ms; owned by the agent   |
| {p}:kn:{<agent>}:slugs            | hash   | source slug -> training id; owned by the agent          |
| {p}:kn:{<agent>}:seq, :gen        | string | last training id / content generation handed out        |
| {p}:kn:{<agent>}:version          | string | bumped when answering content changes (caches rebuild)  |
| {p}:kn:{<agent>}:src:<id>         | hash   | one source's record; owned by DELETE training/agent     |
| {p}:kn:{<agent>}:chunks:<id>:<g>  | hash   | n -> chunk + vector of generation g; owned by its       |
|                                   |        | source (the live one answers, a pending one is built)   |
| {p}:kn:{<agent>}:data:<id>        | string | a text source's submitted text until its job finished   |
| {p}:kn:{<agent>}:idem:<sha256>    | string | POST training idempotency record; TTL 24 h              |
| {p}:kn:{<agent>}:seeded           | set    | config sources seeded once (deleted stay deleted)       |
| {p}:lead:{<agent>}:index          | zset   | lead id scored by creation ms (the list order); owned   |
|                                   |        | by the agent (deleted with it), never expires           |
| {p}:lead:{<agent>}:records        | hash   | lead id -> JSON lead; owned by the agent; DELETE lead   |
|                                   |        | removes its field                                       |
| {p}:lead:{<agent>}:idem           | hash   | POST leads idempotency digest -> body digest:lead id    |
|                                   |        | ("-:<id>" once the lead is deleted); each entry lives   |
|                                   |        | 24 h (see :idem-exp); owned by the agent                |
| {p}:lead:{<agent>}:idem-exp       | zset   | idempotency digest scored by its expiry ms; expired     |
|                                   |        | entries leave both at the next create                   |
| {p}:lead:{<agent>}:daily          | hash   | UTC day (YYYY-MM-DD) -> leads created that day (never   |
|                                   |        | decremented: analytics counts captures); owned by agent |
| {p}:jobs:ingest                   | stream | ingestion jobs, consumer group "ingest"; acknowledged   |
|                                   |        | entries are deleted, MAXLEN ~100k                       |
| {p}:key:{<sha256 of api key>}     | string | JSON key record; TTL expiry+30 d, or 30 d once revoked, |
|                                   |        | else owned by `chatspark keys revoke`                   |
| {p}:keys                          | hash   | key id -> sha256, owned by `chatspark keys`             |
| {p}:key:{<sha256>}:rate           | zset   | the key's requests of the last minute; PX one window    |
| {p}:key:{<sha256>}:used:<YYYY-MM> | string | completed turns that month; TTL the month + 62 days     |
| {p}:key:{<sha256>}:held:<YYYY-MM> | zset   | credits held by running turns, scored by their expiry;  |
|                                   |        | PX the hold time                                        |
| {p}:visitor-secret                | string | HMAC key of visitor tokens and of widget conversation   |
|                                   |        | ids; a singleton, never expires (deleting it signs out  |
|                                   |        | every visitor: their conversations stay, unreachable)   |
| {p}:visitor:{<agent>:<vid>}:rate  | zset   | a widget visitor's chat turns and leads of the last     |
|                                   |        | minute; PX one window                                   |
| {p}:address:{<ip>}:rate           | zset   | widget requests from one client address in the last     |
|                                   |        | minute (all agents); PX one window                      |
| {p}:agent:{<id>}:widget-used:<M>  | string | the agent's completed widget turns that month (UTC);    |
|                                   |        | TTL the month + 62 days                                 |
| {p}:agent:{<id>}:widget-held:<M>  | zset   | widget credits held by running turns; PX the hold time  |
| {p}:expiry-sweep                  | string | the replica sweeping expired conversations now; PX the  |
|                                   |        | sweep interval                                          |
| {p:webhooks}:hooks                | hash   | webhook id -> JSON record (with its signing secret);    |
|                                   |        | owned by DELETE /webhooks/{id}                          |
| {p:webhooks}:seq                  | string | last webhook id handed out (never reused)               |
| {p:webhooks}:failures             | hash   | webhook id -> failed deliveries in a row (0 on success) |
| {p:webhooks}:inactive             | hash   | webhook id -> ms it was deactivated; PATCH isActive     |
| {p:webhooks}:outbox               | stream | events not yet fanned out (no cluster); relayed entries |
|                                   |        | are deleted                                             |
| {p:outbox:<n>}:outbox             | stream | the same, one per slot, in the producer's slot (cluster |
|                                   |        | mode; <n> chosen so the tag hashes to that slot)        |
| {p:webhooks}:outboxes             | zset   | the outboxes above (cluster mode), one per slot, kept;  |
|                                   |        | score > 0: written since last drained (a relay hint)    |
| {p:webhooks}:relayed              | zset   | event ids fanned out (cluster mode: a relay retried     |
|                                   |        | after its outbox XDEL failed is a no-op); trimmed 1 day |
| {p:webhooks}:dlv:<id>             | hash   | one delivery: webhook, event, body, status, attempts,   |
|                                   |        | last code, next attempt; TTL keep_deliveries_seconds    |
| {p:webhooks}:hook:<id>:dlv        | zset   | the webhook's delivery ids by creation ms; trimmed to   |
|                                   |        | keep_deliveries_seconds, deleted with the webhook       |
| {p:webhooks}:queue                | stream | deliveries due now, consumer group "deliver"; finished  |
|                                   |        | entries are deleted, MAXLEN ~1M                         |
| {p:webhooks}:retry                | zset   | delivery id scored by its next attempt ms; due ones     |
|                                   |        | move to the queue                                       |
"""

from __future__ import annotations

import functools
from binascii import crc_hqx

# How long an expired or revoked key record stays, so a client hears EXPIRED/REVOKED, not INVALID.
KEY_TOMBSTONE_SECONDS = 30 * 24 * 3600
IDEMPOTENCY_SECONDS = 24 * 3600


class Layout:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def conversation(self, cid: str) -> tuple[str, str, str]:
        """(meta, turns, turn ids) of one conversation, all in the slot of `{cid}`."""
        tag = f"{self.prefix}:conv:{{{cid}}}"
        return tag, f"{tag}:turns", f"{tag}:tids"

    def lease(self, cid: str) -> str:
        return f"{self.prefix}:conv:{{{cid}}}:lease"

    def idempotent_turn(self, digest: str) -> tuple[str, str, str]:
        """(record, events, lease) of one idempotent chat turn, in the slot of `{digest}`."""
        tag = f"{self.prefix}:turn:{{{digest}}}"
        return tag, f"{tag}:events", f"{tag}:lease"

    def ratings(self, cid: str) -> str:
        return f"{self.prefix}:conv:{{{cid}}}:ratings"

    def conversation_keys(self, cid: str) -> tuple[str, str, str, str]:
        """Every key of one conversation (what a delete removes)."""
        return (*self.conversation(cid), self.ratings(cid))

    def agent_conversations(self, agent_id: int) -> str:
        return f"{self.prefix}:agent:{{{agent_id}}}:convs"

    def agent_conversation_expiry(self, agent_id: int) -> str:
        return f"{self.prefix}:agent:{{{agent_id}}}:expiry"

    def agent_stats(self, agent_id: int, day: str) -> str:
        """The agent's analytics counters of one UTC day (`2026-12-02`), in the agent's slot."""
        return f"{self.prefix}:agent:{{{agent_id}}}:stats:{day}"

    def agent_counted_turns(self, agent_id: int) -> str:
        return f"{self.prefix}:agent:{{{agent_id}}}:counted"

    # Agents share one hash tag: creating, seeding and deleting touch the record and the index
    # atomically in one slot. Their number is small (an agent is configuration, not traffic).
    def agent(self, agent_id: int) -> str:
        return f"{{{self.prefix}:agents}}:agent:{agent_id}"

    def agent_index(self) -> str:
        return f"{{{self.prefix}:agents}}:index"

    def agent_seq(self) -> str:
        return f"{{{self.prefix}:agents}}:seq"

    def agents_seeded(self) -> str:
        return f"{{{self.prefix}:agents}}:seeded"

    def agent_idempotency(self, digest: str) -> str:
        return f"{{{self.prefix}:agents}}:idem:{digest}"

    def cursor_secret(self) -> str:
        return f"{self.prefix}:cursor-secret"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:key:{{{key_hash}}}"

    def rate_log(self, key_hash: str) -> str:
        return f"{self.prefix}:key:{{{key_hash}}}:rate"

    def credits(self, key_hash: str, month: str) -> tuple[str, str]:
        """(used, held) credit counters of one key for one month (`2026-11`), in the key's slot."""
        tag = f"{self.prefix}:key:{{{key_hash}}}"
        return f"{tag}:used:{month}", f"{tag}:held:{month}"

    def widget_credits(self, agent_id: int, month: str) -> tuple[str, str]:
        """(used, held) counters of an agent's widget turns for one month, in the agent's slot."""
        tag = f"{self.prefix}:agent:{{{agent_id}}}"
        return f"{tag}:widget-used:{month}", f"{tag}:widget-held:{month}"

    def visitor_secret(self) -> str:
        return f"{self.prefix}:visitor-secret"

    def visitor_rate_log(self, agent_id: int, visitor_id: str) -> str:
        return f"{self.prefix}:visitor:{{{agent_id}:{visitor_id}}}:rate"

    def address_rate_log(self, address: str) -> str:
        return f"{self.prefix}:address:{{{address}}}:rate"

    def api_key_index(self) -> str:
        return f"{self.prefix}:keys"

    # An agent's knowledge shares the hash tag `{<agent id>}`: a source's record, its chunks and the
    # agent's version move together in one script (a re-train's swap is atomic).
    def _knowledge(self, agent_id: int) -> str:
        return f"{self.prefix}:kn:{{{agent_id}}}"

    def knowledge_sources(self, agent_id: int) -> str:
        return f"{self._knowledge(agent_id)}:sources"

    def knowledge_slugs(self, agent_id: int) -> str:
        return f"{self._knowledge(agent_id)}:slugs"

    def knowledge_counters(self, agent_id: int) -> tuple[str, str]:
        """(training id sequence, generation sequence)."""
        tag = self._knowledge(agent_id)
        return f"{tag}:seq", f"{tag}:gen"

    def knowledge_version(self, agent_id: int) -> str:
        return f"{self._knowledge(agent_id)}:version"

    def knowledge_source(self, agent_id: int, training_id: int) -> str:
        return f"{self._knowledge(agent_id)}:src:{training_id}"

    def knowledge_chunks(self, agent_id: int, training_id: int, generation: int) -> str:
        return f"{self._knowledge(agent_id)}:chunks:{training_id}:{generation}"

    def knowledge_data(self, agent_id: int, training_id: int) -> str:
        return f"{self._knowledge(agent_id)}:data:{training_id}"

    def knowledge_idempotency(self, agent_id: int, digest: str) -> str:
        return f"{self._knowledge(agent_id)}:idem:{digest}"

    def knowledge_seeded(self, agent_id: int) -> str:
        return f"{self._knowledge(agent_id)}:seeded"

    # An agent's leads share the hash tag `{<agent id>}`: a create writes the record, the index, the
    # day's counter and the idempotency entry in one script; an agent's deletion drops them in one DEL.
    def leads(self, agent_id: int) -> tuple[str, str]:
        """(index, records) of an agent's leads."""
        tag = f"{self.prefix}:lead:{{{agent_id}}}"
        return f"{tag}:index", f"{tag}:records"

    def lead_idempotency(self, agent_id: int) -> tuple[str, str]:
        """(entries, their expiry) of an agent's POST leads idempotency records."""
        tag = f"{self.prefix}:lead:{{{agent_id}}}"
        return f"{tag}:idem", f"{tag}:idem-exp"

    def lead_daily(self, agent_id: int) -> str:
        return f"{self.prefix}:lead:{{{agent_id}}}:daily"

    def lead_keys(self, agent_id: int) -> tuple[str, ...]:
        """Every key of an agent's leads (what the agent's deletion removes)."""
        return (*self.leads(agent_id), *self.lead_idempotency(agent_id), self.lead_daily(agent_id))

    def expiry_sweep(self) -> str:
        """Held (PX the sweep interval) by the replica sweeping expired conversations this round."""
        return f"{self.prefix}:expiry-sweep"

    def ingestion_jobs(self) -> str:
        return f"{self.prefix}:jobs:ingest"

    # Webhooks share one hash tag: registering, fanning an event out to its deliveries and recording
    # an attempt are single scripts over the records, the queue and the counters. Events reach it
    # through an outbox written by the producer's own script (see store/webhooks.py).
    def _webhooks(self) -> str:
        return f"{{{self.prefix}:webhooks}}"

    def webhooks(self) -> tuple[str, str]:
        """(records, id sequence). No index: the webhooks are few, read whole and sorted in Python."""
        tag = self._webhooks()
        return f"{tag}:hooks", f"{tag}:seq"

    def webhook_state(self) -> tuple[str, str]:
        """(failed deliveries in a row, deactivated) per webhook id."""
        tag = self._webhooks()
        return f"{tag}:failures", f"{tag}:inactive"

    def webhook_outbox(self, beside: str | None = None) -> str:
        """The outbox events are written to: the shared one, or (cluster mode) the one in the slot of
        the key `beside`, so the producer's script writes it atomically with its own keys. There is
        one outbox per slot, not per producer key: a conversation's turn writes the outbox of its
        slot, so there are never more than 16,384 outboxes to drain."""
        if beside is None:
            return f"{self._webhooks()}:outbox"
        return f"{{{_slot_tags(self.prefix)[key_slot(beside)]}}}:outbox"

    def webhook_outboxes(self) -> tuple[str, str]:
        """(the registry of outboxes, the event ids relayed) for cluster mode."""
        tag = self._webhooks()
        return f"{tag}:outboxes", f"{tag}:relayed"

    def webhook_delivery(self, delivery_id: str) -> str:
        return f"{self._webhooks()}:dlv:{delivery_id}"

    def webhook_deliveries(self, webhook_id: int) -> str:
        return f"{self._webhooks()}:hook:{webhook_id}:dlv"

    def webhook_queue(self) -> tuple[str, str]:
        """(deliveries due now: a stream with a consumer group, retries scheduled: a zset)."""
        tag = self._webhooks()
        return f"{tag}:queue", f"{tag}:retry"


SLOTS = 16384


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key: CRC16 (XMODEM, which `binascii.crc_hqx` computes) of its
    hash tag, or of the whole key when it has none."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key.encode(), 0) % SLOTS


@functools.lru_cache(maxsize=4)
def _slot_tags(prefix: str) -> tuple[str, ...]:
    """For every slot, a hash tag of this prefix that lands in it: `<prefix>:outbox:<n>` with the
    smallest n that does (the same on every replica). ~140k CRCs, ~80 ms, once per process."""
    tags: list[str | None] = [None] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = f"{prefix}:outbox:{n}"
        slot = crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        n += 1
    return tuple(tags)  # type: ignore[arg-type]
