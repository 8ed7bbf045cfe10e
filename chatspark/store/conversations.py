"""Conversations: their turns, an agent's index of them, ratings; read and written atomically.

A conversation's keys share the hash tag `{<cid>}` (one slot); its turn is taken under a lease
(`leases.py`) read in the same round trip as the history.
"""

from __future__ import annotations

import logging
import time
from enum import IntEnum
from typing import Any

import msgspec

from chatspark.clock import iso, now_ms
from chatspark.store.config import StoreConfig
from chatspark.store import scripts
from chatspark.store.connection import Connection, ScriptCall
from chatspark.store.credits import Charge, charge_call, counters
from chatspark.store.errors import ConversationGone, LeaseTaken, StoreUnavailable
from chatspark.store.layout import Layout
from chatspark.store.leases import Lease
from chatspark.store.webhooks import WebhookStore, event_args
from chatspark.webhook_events import ConversationEnded, ConversationStarted, Event, MessageSent

log = logging.getLogger("chatspark.store")


class Citation(msgspec.Struct, frozen=True, rename="camel"):
    """A passage sent to the model with a turn: its source and how relevant it was (0–1). Stored
    with the turn and shown as is by the API (`sources`)."""

    training_id: int
    source: str
    title: str | None
    url: str | None
    score: float


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
    sources: list[Citation] = []  # the knowledge passages the answer was grounded on


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


class AppendResult(msgspec.Struct, frozen=True):
    stored: bool  # False: this turn id was already stored by an earlier attempt
    turn_count: int
    created: int


class RateOutcome(IntEnum):
    """What RATE_MESSAGE answers."""

    RATED = 1
    NO_CONVERSATION = 0
    NO_MESSAGE = -1
    NOT_RATABLE = -2


# What APPEND_TURN answers in its first field.
_STORED, _ALREADY_STORED, _LEASE_LOST = 1, 0, -3

# Analytics: a day's counters live at least this long; a turn id stays in the counted set this long
# (a retried write comes within seconds); answer latency is counted in these buckets (upper bounds, ms).
STATS_TTL_SECONDS = 400 * 86400
COUNTED_WINDOW_MS = 600 * 1000
LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000)


def latency_bucket(turn: StoredTurn) -> str:
    """The bucket of the turn's answer latency (`inf` past the last), '' when it is not known."""
    if turn.asked <= 0:
        return ""
    latency = turn.created - turn.asked
    return next((str(bound) for bound in LATENCY_BUCKETS_MS if latency <= bound), "inf")


def utc_day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


_turn_decoder = msgspec.json.Decoder(StoredTurn)
_encoder = msgspec.json.Encoder()


def turn_events(cid: str, agent_id: int, turn: StoredTurn) -> list[Event]:
    """A stored turn's webhook events: the conversation started (its first turn only: the write
    script decides), the user's message and the assistant's."""
    asked = turn.asked or turn.created
    return [
        Event.of("conversation.started", agent_id, ConversationStarted(
            conversation_id=cid, agent_id=agent_id, created_at=iso(asked)), asked),
        Event.of("message.sent", agent_id, MessageSent(
            message_id=turn.user_id, conversation_id=cid, agent_id=agent_id, role="user", content=turn.query,
            created_at=iso(asked)), asked),
        Event.of("message.sent", agent_id, MessageSent(
            message_id=turn.id, conversation_id=cid, agent_id=agent_id, role="assistant", content=turn.response,
            created_at=iso(turn.created)), turn.created),
    ]


def ended_event(cid: str, agent_id: int, reason: str, at: int) -> Event:
    return Event.of("conversation.ended", agent_id, ConversationEnded(
        conversation_id=cid, agent_id=agent_id, ended_at=iso(at), reason=reason), at)  # type: ignore[arg-type]


class ConversationStore:
    def __init__(self, redis: Connection, layout: Layout, config: StoreConfig, webhooks: WebhookStore) -> None:
        self.redis = redis
        self.layout = layout
        self.config = config
        self.webhooks = webhooks
        self._lease_ms = int(config.lease_seconds * 1000)

    async def load(self, cid: str, recent: int, lease: Lease | None = None) -> Conversation | None:
        """The conversation's metadata and its last `recent` turns, in one round trip, taking
        `lease` on it in the same trip. Raises LeaseTaken; a missing conversation's lease is let go."""
        replies = await self.redis.pipeline(lambda pipe: self.queue_load(pipe, cid, recent, lease))
        return await self.parse_load(replies, cid, recent, lease)

    def queue_load(self, pipe: Any, cid: str, recent: int, lease: Lease | None) -> None:
        """`load`'s commands, for a pipeline that carries others too (see `Store.open_turn`)."""
        meta_key, turns_key, _ = self.layout.conversation(cid)
        if lease is not None:
            pipe.set(self.layout.lease(cid), lease.token, nx=True, px=self._lease_ms)
        pipe.hgetall(meta_key)
        if recent > 0:
            pipe.lrange(turns_key, -recent, -1)

    async def parse_load(self, replies: list[Any], cid: str, recent: int, lease: Lease | None) -> Conversation | None:
        if lease is not None:
            leased, replies = replies[0], replies[1:]
            if not leased:
                raise LeaseTaken(int(replies[0][b"agent"]) if replies[0] else None)
        meta = replies[0]
        if not meta:
            if lease is not None:
                await self.redis.script(scripts.RELEASE_LEASE, [self.layout.lease(cid)], [lease.token])
            return None
        return Conversation(
            id=cid,
            agent_id=int(meta[b"agent"]),
            created=int(meta[b"created"]),
            updated=int(meta[b"updated"]),
            turn_count=int(meta[b"turns"]),
            ttl_seconds=int(meta[b"ttl"]),
            recent_turns=[_turn_decoder.decode(raw) for raw in (replies[1] if recent > 0 else [])],
        )

    def queue_new_lease(self, pipe: Any, lease: Lease) -> None:
        pipe.set(self.layout.lease(lease.name), lease.token, nx=True, px=self._lease_ms)

    async def append(
        self, cid: str, agent_id: int, turn: StoredTurn, *, ttl_seconds: int, new: bool, lease: Lease | None = None,
        unanswered: bool = False, charge: Charge | None = None,
    ) -> AppendResult:
        """Stores one complete turn, slides the conversation's TTL and gives up `lease`, in one round
        trip together with the agent's conversation index. Safe to retry (the turn id makes it a
        no-op). Raises LeaseTaken (fenced off: another turn took the lease) or ConversationGone.
        `charge` (the turn's monthly credit) rides the same trip, as a script of the batch, and is
        taken back when the turn turns out not to be stored.

        The index is written first: an entry whose conversation is not (yet) stored is skipped by
        listings and leaves the index when its expiry passes; a stored conversation missing from
        the index would be unlisted and undeletable.

        The same index script counts the turn in the agent's daily analytics (`layout.agent_stats`),
        once per turn id: a retried write is not counted again. It is counted when the write is sent,
        before APPEND_TURN (another slot) decides: a turn refused there (its conversation vanished, or
        its lease was lost: the caller gets an error) is still counted.
        """
        outbox = await self.webhooks.outbox(self.layout.conversation(cid)[0])
        keys = [*self.layout.conversation_keys(cid), self.layout.lease(cid), outbox]
        args = [turn.id, _encoder.encode(turn), turn.created, ttl_seconds, self.config.max_turns, agent_id, int(new),
                lease.token if lease else ""]
        for event in turn_events(cid, agent_id, turn):
            args += event_args(event)
        index_outbox = await self.webhooks.outbox(self.layout.agent_conversations(agent_id))
        index_keys = [self.layout.agent_conversations(agent_id), self.layout.agent_conversation_expiry(agent_id),
                      self.layout.agent_stats(agent_id, utc_day(turn.created)), self.layout.agent_counted_turns(agent_id),
                      index_outbox]
        index_args = [cid, turn.created, turn.created + ttl_seconds * 1000, turn.created, int(new), turn.id,
                      int(unanswered), turn.model, turn.prompt_tokens + turn.completion_tokens, latency_bucket(turn),
                      STATS_TTL_SECONDS, COUNTED_WINDOW_MS, agent_id]
        calls = [ScriptCall(scripts.INDEX_CONVERSATION, index_keys, index_args), ScriptCall(scripts.APPEND_TURN, keys, args)]
        if charge is not None:  # the turn's credit, charged in the same trip (once: see CHARGE_CREDIT)
            calls.append(charge_call(self.layout, charge))
        charged = False
        for attempt in range(1, self.config.write_attempts + 1):
            try:
                replies = await self.redis.scripts(calls)
                if charge is not None:
                    charge_reply, replies = replies[2], replies[:2]
                    if isinstance(charge_reply, Exception):  # the turn stands; the hold lapses by itself
                        log.error("could not charge a turn's credit: %s", charge_reply)
                    elif charge_reply >= 0:
                        charged = True  # (even if another script of this attempt failed)
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is not None:
                    raise StoreUnavailable() from failed
                ended, (status, count, created) = replies
                break
            except StoreUnavailable as exc:
                log.warning("turn write attempt %d failed: %s", attempt, exc.__cause__ or exc)
                if attempt == self.config.write_attempts:
                    raise
        if ended:
            await self.webhooks.hint(index_outbox)
        if status == _STORED:
            await self.webhooks.hint(outbox)
        if status not in (_STORED, _ALREADY_STORED) and charged:  # not stored after all: not spent
            used, _ = counters(self.layout, charge.account, charge.month)  # type: ignore[union-attr]
            await self.redis.run(lambda r: r.decr(used))
        if status == _LEASE_LOST:
            raise LeaseTaken(agent_id)
        if status not in (_STORED, _ALREADY_STORED):
            raise ConversationGone(cid)
        return AppendResult(stored=status == _STORED, turn_count=int(count), created=int(created))

    async def read_turns(self, cid: str, agent_id: int, first: int = 0, count: int = -1) -> TurnPage | None:
        """Turns numbered `first` on (`count` of them, -1: all), atomically; None if no such conversation."""
        meta, turns, _ = self.layout.conversation(cid)
        reply = await self.redis.script(scripts.READ_TURNS, [meta, turns, self.layout.ratings(cid)], [first, count, agent_id])
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

    async def agent_of(self, cid: str) -> int | None:
        """The agent of a stored conversation; None when there is no such conversation (or not yet: its
        first turn is still running)."""
        agent = await self.redis.run(lambda r: r.hget(self.layout.conversation(cid)[0], "agent"))
        return None if agent is None else int(agent)

    async def rate(self, cid: str, agent_id: int, message_id: str, rating: str | None, now: int | None = None) -> RateOutcome:
        """Rates an assistant message (None clears its rating); a change is counted in the agent's
        analytics of the day it is made (+1 for the new rating, -1 for the one it replaced), one
        more round trip, in the agent's slot (after the rating: a crash in between misses one count)."""
        meta, turns, tids = self.layout.conversation(cid)
        keys = [meta, tids, self.layout.ratings(cid), turns]
        reply = await self.redis.script(scripts.RATE_MESSAGE, keys, [message_id, rating or "", agent_id])
        outcome = RateOutcome(int(reply[0]))
        previous = (reply[1].decode() if isinstance(reply[1], bytes) else reply[1]) if len(reply) > 1 else ""
        if outcome == RateOutcome.RATED and previous != (rating or ""):
            stats = self.layout.agent_stats(agent_id, utc_day(now or now_ms()))

            def count(pipe: Any) -> None:
                if previous:
                    pipe.hincrby(stats, f"feedback:{previous}", -1)
                if rating:
                    pipe.hincrby(stats, f"feedback:{rating}", 1)
                pipe.expire(stats, STATS_TTL_SECONDS)

            await self.redis.pipeline(count)
        return outcome

    async def delete(self, cid: str, agent_id: int, now: int | None = None) -> bool:
        """Deletes the conversation (reporting `conversation.ended`, deleted) and unindexes it."""
        outbox = await self.webhooks.outbox(self.layout.conversation(cid)[0])
        keys = [*self.layout.conversation_keys(cid), outbox]
        args = [agent_id, *event_args(ended_event(cid, agent_id, "deleted", now or now_ms()))]
        deleted = await self.redis.script(scripts.DELETE_CONVERSATION, keys, args)
        if deleted:
            await self.webhooks.hint(outbox)

        def unindex(pipe: Any) -> None:
            pipe.zrem(self.layout.agent_conversations(agent_id), cid)
            pipe.zrem(self.layout.agent_conversation_expiry(agent_id), cid)

        await self.redis.pipeline(unindex)
        return bool(deleted)


class ConversationIndex:
    """An agent's conversations: listed newest first, deleted together with the agent, and reported
    as ended when they expire."""

    def __init__(self, redis: Connection, layout: Layout, webhooks: WebhookStore) -> None:
        self.redis = redis
        self.layout = layout
        self.webhooks = webhooks

    async def list(self, agent_id: int, after: tuple[int, str] | None, limit: int) -> list[ConversationInfo]:
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
            raw = await self.redis.run(
                lambda r, t=top, o=offset, b=batch: r.zrevrangebyscore(index, t, "-inf", start=o, num=b, withscores=True)
            )
            candidates = []
            for member, score in raw:
                cid, created = member.decode(), int(score)
                # Entries sharing the position's creation time sort by id, descending.
                if after is not None and created == after[0] and cid >= after[1]:
                    continue
                candidates.append(cid)
            found.extend(await self._rows(agent_id, candidates))
            if len(raw) < batch:
                break
            last = int(raw[-1][1])
            ties = sum(1 for _, score in raw if int(score) == last)
            offset = offset + ties if last == top else ties
            top = last
        return found[:limit]

    async def _rows(self, agent_id: int, cids: list[str]) -> list[ConversationInfo]:
        """The rows of the conversations that are stored."""
        if not cids:
            return []

        def read(pipe: Any) -> None:
            for cid in cids:
                meta, turns, _ = self.layout.conversation(cid)
                pipe.hmget(meta, "agent", "created", "updated", "ttl")
                pipe.llen(turns)

        replies = await self.redis.pipeline(read)
        rows = []
        for i, cid in enumerate(cids):
            (agent, created, updated, ttl), stored = replies[2 * i], replies[2 * i + 1]
            # Expired, or its first turn still running: not listed (the expiry index trims it).
            if agent is None or int(agent) != agent_id:
                continue
            rows.append(ConversationInfo(
                id=cid, created=int(created), updated=int(updated), ttl_seconds=int(ttl), stored_turns=int(stored)
            ))
        return rows

    async def delete_all(self, agent_id: int, now: int | None = None) -> int:
        """Deletes every conversation of an agent, each reporting `conversation.ended` (agent_deleted),
        and its index; returns how many were listed. 200 per round trip: one delete script each, then
        their index entries."""
        index = self.layout.agent_conversations(agent_id)
        now = now or now_ms()
        deleted = 0
        while cids := [c.decode() for c in await self.redis.run(lambda r: r.zrange(index, 0, 199))]:
            calls, outboxes = [], []
            for cid in cids:
                outboxes.append(await self.webhooks.outbox(self.layout.conversation(cid)[0]))
                args = [agent_id, *event_args(ended_event(cid, agent_id, "agent_deleted", now))]
                calls.append(ScriptCall(scripts.DELETE_CONVERSATION, [*self.layout.conversation_keys(cid), outboxes[-1]], args))
            replies = await self.redis.scripts(calls)
            failed = next((r for r in replies if isinstance(r, Exception)), None)
            if failed is not None:
                raise StoreUnavailable() from failed
            for outbox in dict.fromkeys(o for o, deleted in zip(outboxes, replies, strict=True) if deleted):
                await self.webhooks.hint(outbox)
            await self.redis.run(lambda r, batch=cids: r.zrem(index, *batch))
            deleted += len(cids)
        await self.redis.run(lambda r: r.delete(index, self.layout.agent_conversation_expiry(agent_id)))
        return deleted

    async def take_sweep(self, owner: str, interval_ms: int) -> bool:
        """True when this replica sweeps expired conversations this round (one replica per interval)."""
        return bool(await self.redis.run(lambda r: r.set(self.layout.expiry_sweep(), owner, nx=True, px=interval_ms)))

    async def end_expired(self, agent_ids: list[int], now: int, limit: int = 500) -> int:
        """Reports and unindexes the expired conversations of these agents (up to `limit` each), in
        one round trip; returns how many ended."""
        calls, outboxes = [], []
        for agent_id in agent_ids:
            index = self.layout.agent_conversations(agent_id)
            outboxes.append(await self.webhooks.outbox(index))
            keys = [index, self.layout.agent_conversation_expiry(agent_id), outboxes[-1]]
            calls.append(ScriptCall(scripts.END_EXPIRED, keys, [now, agent_id, limit]))
        replies = await self.redis.scripts(calls) if calls else []
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise StoreUnavailable() from failed
        for outbox in dict.fromkeys(o for o, ended in zip(outboxes, replies, strict=True) if ended):
            await self.webhooks.hint(outbox)
        return sum(int(r) for r in replies)
