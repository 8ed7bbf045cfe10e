"""Webhooks in Redis: their records and signing secrets, the event outbox, each delivery's record,
the delivery queue (a stream with a consumer group) and the retries scheduled on a zset.

How an event travels, and the seam for producers:

1. **Enqueue, atomically with the change it reports.** A producer's own Lua script takes the
   outbox as one more key and the event as four more ARGV (`event_args(event)`), and calls
   `enqueue_event(outbox, first)` (`scripts.ENQUEUE_EVENT_LUA`, prepended to its source) right
   where it writes: the event exists exactly when the change does, before the change is
   acknowledged. `WebhookStore.outbox(beside)` names the outbox for a producer whose keys share the
   hash tag of `beside` (`UPDATE_AGENT`, `COMPLETE_JOB` and `FAIL_JOB` do this). A producer without a
   script of its own runs `scripts.ENQUEUE_EVENT` (or queues it in its MULTI/pipeline).
   Without a cluster there is one outbox, `{p:webhooks}:outbox`: Redis does not care about slots, so
   any script may write it. In cluster mode the outbox is `<producer's tag>:outbox`, in the
   producer's slot, listed once in `{p:webhooks}:outboxes` (before its first write, so no event
   waits in an outbox nobody drains). There is one outbox per slot (`Layout.webhook_outbox`): a
   conversation's turn writes the outbox of its conversation's slot, so there are at most 16,384.
   After the write the producer hints the outbox (`hint`: its score in the registry goes up), so the
   relays poll only hinted outboxes, and sweep all of them slowly for a hint lost to a crash.
2. **Fan out, once.** A relay on every replica reads outbox entries and runs `FAN_OUT`: a delivery
   record per matching webhook (event type and `agentIds`), each queued on the delivery stream. The
   entry leaves the outbox in that same script (one slot), or, in cluster mode, the event id is
   marked relayed there and the entry deleted after: a relay that dies in between is repeated
   by another and does nothing twice.
3. **Deliver, at least once.** Workers read the queue in the consumer group "deliver"; each
   attempt's outcome, the retry (a zset moved back to the queue when due), the webhook's failure
   count and its deactivation are one script (`RECORD_ATTEMPT`) that also acknowledges the entry.
   An entry whose worker died stays pending and is claimed by another replica (XAUTOCLAIM).
   The delivery id is minted once, at fan-out: every retry and every takeover sends the same one.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Literal

import msgspec

from chatspark.store import scripts
from chatspark.store.connection import Connection, ScriptCall
from chatspark.store.errors import StoreUnavailable
from chatspark.store.layout import Layout
from chatspark.store.work_queue import WorkQueue
from chatspark.webhook_events import Event

log = logging.getLogger("chatspark.webhooks")
DELIVERY_GROUP = "deliver"
DeliveryStatus = Literal["pending", "delivered", "failed"]
Outcome = Literal["ok", "retry", "failed", "drop", "defer", "skip"]


class WebhookRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook as stored; `secret` signs its deliveries (stored readable for that; never logged)."""

    id: int
    name: str
    url: str
    events: list[str]
    agent_ids: list[int] = []  # empty: every agent
    secret: str
    created: int
    updated: int

    def wants(self, event_type: str, agent_id: int) -> bool:
        return event_type in self.events and (not self.agent_ids or agent_id in self.agent_ids)


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    record: WebhookRecord
    active: bool


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    webhook_id: int
    event: str
    body: bytes  # the exact bytes every attempt sends and signs
    created: int
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    next_attempt: int | None


class QueuedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    entry: str  # the queue's stream entry id
    delivery_id: str
    webhook_id: int


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    outbox: str
    entry: str
    event: Event


_record_decoder = msgspec.json.Decoder(WebhookRecord)
_encode = msgspec.json.Encoder().encode


def event_args(event: Event | None) -> list[Any]:
    """The four ARGV a producer's script passes to `enqueue_event` (no event: type '')."""
    if event is None:
        return ["", "", "", ""]
    return [event.type, event.agent_id, event.at, event.data]


def envelope(event: Event) -> bytes:
    """A delivery's body: `{"event", "timestamp", "data"}` (data as the producer encoded it)."""
    from chatspark.clock import iso

    return b'{"event":"%s","timestamp":"%s","data":%s}' % (event.type.encode(), iso(event.at).encode(), event.data)


class WebhookStore:
    def __init__(self, redis: Connection, layout: Layout) -> None:
        self.redis = redis
        self.layout = layout
        self.cluster = redis.config.cluster
        self._listed: set[str] = set()  # outboxes this process has seen in the registry
        self.queue = WorkQueue(redis, layout.webhook_queue()[0], DELIVERY_GROUP)

    # -- the producers' seam -----------------------------------------------------------------------

    async def outbox(self, beside: str) -> str:
        """The outbox a script writing `beside` (and keys of its hash tag) enqueues events into."""
        if not self.cluster:
            return self.layout.webhook_outbox()
        outbox = self.layout.webhook_outbox(beside)
        if outbox not in self._listed:
            registry, _ = self.layout.webhook_outboxes()
            await self.redis.run(lambda r: r.zadd(registry, {outbox: 0}, nx=True))
            self._listed.add(outbox)
        return outbox

    async def hint(self, outbox: str) -> None:
        """Tells the relays (cluster mode) that `outbox` holds a new event: they poll the outboxes
        hinted, not all 16,384 (~0.5 s of CPU a round). Sent after the producer's write; one lost (the
        replica died in between) delays that event until the relays' slow sweep of every outbox."""
        if self.cluster:
            registry, _ = self.layout.webhook_outboxes()
            await self.redis.run(lambda r: r.zincrby(registry, 1, outbox))

    async def enqueue(self, event: Event, beside: str | None = None) -> None:
        """One event on its own (a producer with no script to put it in)."""
        outbox = await self.outbox(beside) if beside else self.layout.webhook_outbox()
        await self.redis.script(scripts.ENQUEUE_EVENT, [outbox], event_args(event))
        await self.hint(outbox)

    # -- webhooks ----------------------------------------------------------------------------------

    async def next_id(self) -> int:
        _, seq = self.layout.webhooks()
        return int(await self.redis.run(lambda r: r.incr(seq)))

    async def save(self, record: WebhookRecord, *, new: bool, active: bool | None, now: int) -> bool:
        """Stores a new webhook, or replaces one that still exists; `active` True re-enables it (and
        forgets its failures), False deactivates it, None leaves it as it is."""
        hooks, _ = self.layout.webhooks()
        failures, inactive = self.layout.webhook_state()
        flag = "" if active is None else ("1" if active else "0")
        args = [record.id, _encode(record), "new" if new else "update", flag, now]
        return bool(await self.redis.script(scripts.SAVE_WEBHOOK, [hooks, failures, inactive], args))

    async def get(self, webhook_id: int) -> Webhook | None:
        hooks, _ = self.layout.webhooks()
        _, inactive = self.layout.webhook_state()
        raw, off = await self.redis.pipeline(lambda p: (p.hget(hooks, webhook_id), p.hexists(inactive, webhook_id)))
        return None if raw is None else Webhook(record=_record_decoder.decode(raw), active=not off)

    async def all(self) -> list[Webhook]:
        """Every webhook, in one round trip (they are few: configuration, not traffic)."""
        hooks, _ = self.layout.webhooks()
        _, inactive = self.layout.webhook_state()
        raws, off = await self.redis.pipeline(lambda p: (p.hvals(hooks), p.hkeys(inactive)))
        disabled = {int(i) for i in off}
        records = [_record_decoder.decode(raw) for raw in raws]
        return [Webhook(record=r, active=r.id not in disabled) for r in records]

    async def list(self, after: tuple[int, int] | None, limit: int) -> list[Webhook]:
        """Newest first by (creation, id), strictly after `after`."""
        found = sorted(await self.all(), key=lambda w: (w.record.created, w.record.id), reverse=True)
        return [w for w in found if after is None or (w.record.created, w.record.id) < after][:limit]

    async def delete(self, webhook_id: int) -> bool:
        hooks, _ = self.layout.webhooks()
        failures, inactive = self.layout.webhook_state()
        keys = [hooks, failures, inactive, self.layout.webhook_deliveries(webhook_id)]
        return bool(await self.redis.script(scripts.DELETE_WEBHOOK, keys, [webhook_id]))

    # -- deliveries of one webhook -----------------------------------------------------------------

    async def deliveries(self, webhook_id: int, after: tuple[int, str] | None, limit: int) -> list[DeliveryRecord]:
        """Its recent deliveries newest first by (creation, id), strictly after `after`."""
        top = "+inf" if after is None else after[0]
        ranked = await self.redis.run(
            lambda r: r.zrevrangebyscore(self.layout.webhook_deliveries(webhook_id), top, "-inf", withscores=True)
        )
        rows = sorted(((int(score), _text(member)) for member, score in ranked), reverse=True)
        ids = [did for created, did in rows if after is None or (created, did) < after][: limit + 5]
        raws = await self.redis.pipeline(lambda p: [p.hgetall(self.layout.webhook_delivery(did)) for did in ids])
        return [_delivery(raw) for raw in raws if raw][:limit]  # an expired record is skipped

    async def attempt(self, queued: QueuedDelivery) -> tuple[DeliveryRecord | None, Webhook | None]:
        """What an attempt needs, in one round trip: the delivery and its webhook (None: gone)."""
        hooks, _ = self.layout.webhooks()
        _, inactive = self.layout.webhook_state()
        raw, hook, off = await self.redis.pipeline(lambda p: (
            p.hgetall(self.layout.webhook_delivery(queued.delivery_id)), p.hget(hooks, queued.webhook_id),
            p.hexists(inactive, queued.webhook_id),
        ))
        webhook = None if hook is None else Webhook(record=_record_decoder.decode(hook), active=not off)
        return (_delivery(raw) if raw else None), webhook

    # -- the relay: outbox -> deliveries -----------------------------------------------------------

    async def hinted_outboxes(self, limit: int = 1000) -> list[tuple[str, float]]:
        """(cluster mode) Outboxes written since a relay last drained them, with their hint count."""
        registry, _ = self.layout.webhook_outboxes()
        found = await self.redis.run(lambda r: r.zrangebyscore(registry, "(0", "+inf", start=0, num=limit, withscores=True))
        return [(_text(o), float(score)) for o, score in found]

    async def registered_outboxes(self, start: int, count: int) -> list[str]:
        """(cluster mode) A page of every outbox ever written, for the relays' slow sweep."""
        registry, _ = self.layout.webhook_outboxes()
        return [_text(o) for o in await self.redis.run(lambda r: r.zrange(registry, start, start + count - 1))]

    async def clear_hints(self, drained: list[tuple[str, float]]) -> None:
        """Drained outboxes lose their hint, unless a producer hinted again since it was read."""
        if drained:
            registry, _ = self.layout.webhook_outboxes()
            await self.redis.script(scripts.CLEAR_HINTS, [registry], [v for pair in drained for v in pair])

    async def pending_events(self, outboxes: list[str], count: int, block_ms: int | None = None) -> list[OutboxEntry]:
        """The oldest events of each outbox, read in one pipeline; with `block_ms` (one outbox), waiting
        that long for one to arrive. An entry that is not an event (written by hand, or by a bug) is
        deleted, so it cannot hold up the events behind it."""
        if block_ms is not None:
            [outbox] = outboxes
            read = await self.redis.run(lambda r: r.xread({outbox: "0-0"}, count=count, block=block_ms), blocking=True)
            replies = [read[0][1] if read else []]
        else:
            replies = await self.redis.pipeline(lambda p: [p.xrange(o, "-", "+", count=count) for o in outboxes])
        found = []
        for outbox, entries in zip(outboxes, replies, strict=True):
            malformed = []
            for entry, fields in entries:
                try:
                    found.append(_outbox_entry(outbox, entry, fields))
                except (KeyError, ValueError, msgspec.ValidationError):
                    malformed.append(entry)
            if malformed:
                log.error("dropped %d malformed entries of the webhook outbox %s", len(malformed), outbox)
                await self.redis.run(lambda r, o=outbox, m=malformed: r.xdel(o, *m))
        return found

    async def fan_out(self, entries: list[OutboxEntry], webhooks: list[Webhook], now: int, keep_seconds: int) -> int:
        """A delivery per active webhook that wants each event; each entry fanned out once, whichever
        replica gets there first. Returns the deliveries made."""
        queue, _ = self.layout.webhook_queue()
        _, relayed = self.layout.webhook_outboxes()
        calls, made = [], []
        # Entries deleted here, in bulk: those no webhook wants and (cluster mode, where FAN_OUT marks
        # the event relayed instead of deleting it: another slot) all the others.
        gone: dict[str, list[str]] = {}
        for item in entries:
            wanted = [w.record for w in webhooks if w.active and w.record.wants(item.event.type, item.event.agent_id)]
            if not wanted or self.cluster:
                gone.setdefault(item.outbox, []).append(item.entry)
            if not wanted:
                continue
            body = envelope(item.event)
            keys: list[str] = [relayed if self.cluster else item.outbox, queue]
            args: list[Any] = ["z" if self.cluster else "x", _event_id(item) if self.cluster else item.entry,
                               now, keep_seconds]
            for hook in wanted:
                delivery_id = "dlv_" + secrets.token_hex(12)
                keys += [self.layout.webhook_delivery(delivery_id), self.layout.webhook_deliveries(hook.id)]
                args += [delivery_id, hook.id, item.event.type, body]
            calls.append(scripts_call(keys, args))
            made.append(len(wanted))
        replies = await self.redis.scripts(calls) if calls else []
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable() from reply
        if gone:
            await self.redis.pipeline(lambda p: [p.xdel(o, *ids) for o, ids in gone.items()])
        return sum(n for n, reply in zip(made, replies, strict=True) if reply == 1)

    # -- the delivery queue ------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        await self.queue.ensure_group()

    async def next_deliveries(self, consumer: str, count: int, block_ms: int) -> list[QueuedDelivery]:
        return [_queued(entry, fields) for entry, fields in await self.queue.read_new(consumer, count, block_ms)]

    async def orphaned_deliveries(self, consumer: str, idle_ms: int, count: int) -> list[QueuedDelivery]:
        """Queue entries whose worker went quiet for `idle_ms` (its replica died), now this consumer's."""
        return [_queued(entry, fields) for entry, fields in await self.queue.claim_orphans(consumer, idle_ms, count)]

    async def keep_claimed(self, consumer: str, entries: list[str]) -> None:
        """Resets the idle time of entries still being attempted here, so no other replica takes them."""
        await self.queue.keep_claimed(consumer, entries)

    async def move_due(self, now: int, limit: int = 500) -> int:
        queue, retry = self.layout.webhook_queue()
        return int(await self.redis.script(scripts.MOVE_DUE, [retry, queue], [now, limit]))

    async def record(
        self, queued: QueuedDelivery, webhook_id: int, outcome: Outcome, *, status_code: int | None = None,
        next_attempt: int | None = None, now: int, deactivate_after: int,
    ) -> int:
        """Records an attempt's outcome and takes the entry off the queue; 2 when this failure
        deactivated the webhook, -1 when another replica had finished the entry already."""
        queue, retry = self.layout.webhook_queue()
        failures, inactive = self.layout.webhook_state()
        keys = [self.layout.webhook_delivery(queued.delivery_id), queue, retry, failures, inactive]
        args = [queued.entry, DELIVERY_GROUP, outcome, "" if status_code is None else status_code,
                "" if next_attempt is None else next_attempt, now, webhook_id, deactivate_after]
        return int(await self.redis.script(scripts.RECORD_ATTEMPT, keys, args))


def scripts_call(keys: list[str], args: list[Any]) -> ScriptCall:
    return ScriptCall(scripts.FAN_OUT, keys, args)


def _event_id(item: OutboxEntry) -> str:
    return f"{item.outbox}/{item.entry}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _outbox_entry(outbox: str, entry: Any, fields: dict[Any, Any]) -> OutboxEntry:
    f = {_text(k): v for k, v in fields.items()}
    data = f["d"] if isinstance(f["d"], bytes) else str(f["d"]).encode()
    event = msgspec.convert({"type": _text(f["e"]), "agent_id": int(f["a"]), "at": int(f["t"]), "data": data}, Event)
    return OutboxEntry(outbox=outbox, entry=_text(entry), event=event)


def _queued(entry: Any, fields: dict[Any, Any]) -> QueuedDelivery:
    f = {_text(k): _text(v) for k, v in fields.items()}
    return QueuedDelivery(entry=_text(entry), delivery_id=f["d"], webhook_id=int(f.get("w") or 0))


def _delivery(raw: dict[bytes, bytes]) -> DeliveryRecord:
    f = {k.decode(): v for k, v in raw.items()}
    code, nxt = f.get("code", b"").decode(), f.get("next", b"").decode()
    return DeliveryRecord(
        id=f["id"].decode(), webhook_id=int(f["webhook"]), event=f["event"].decode(), body=f["body"],
        created=int(f["created"]), status=f["status"].decode(), attempts=int(f.get("attempts") or 0),  # type: ignore[arg-type]
        last_status_code=int(code) if code else None, next_attempt=int(nxt) if nxt else None,
    )
