"""The webhook delivery worker every replica runs: events from the outbox fanned out into deliveries,
each delivery POSTed, signed, to its webhook's URL, and retried on the configured schedule.

At least once, and nothing waits on a slow receiver: each attempt is a task of its own, at most
`concurrency` per replica and `per_webhook_concurrency` per webhook (a delivery for a webhook
already that busy here is put back for a moment, not waited on); every attempt ends within
`timeout_seconds`. An attempt's outcome, its retry and the webhook's failure count are recorded in
one script with the queue entry's acknowledgement; an entry whose replica died before that is taken
over after `claim_idle_seconds` (XAUTOCLAIM) and sent again with the same delivery id. The address
connected to is checked by the same guard as knowledge fetches; redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING

import anyio

from chatspark import metrics
from chatspark.clock import now_ms
from chatspark.config import WebhooksConfig
from chatspark.store import Store
from chatspark.store.errors import StoreUnavailable
from chatspark.store.webhooks import DeliveryRecord, QueuedDelivery, WebhookRecord

if TYPE_CHECKING:
    import aiohttp

    from chatspark.knowledge.ssrf import GuardedResolver

log = logging.getLogger("chatspark.webhooks")

RELAY_BATCH = 100
# After a batch smaller than RELAY_BATCH the relay waits this long, so events arriving one by one are
# fanned out in batches: a few relay round trips per second whatever the rate (first attempt still
# well within 2 s).
RELAY_PAUSE = 0.05
# Cluster mode: every outbox is polled at least once per SWEEP_SECONDS (an event whose hint was lost
# to a crash waits at most that long), SWEEP_PAGE of them per relay round (~15 ms of CPU).
SWEEP_SECONDS = 30.0
SWEEP_PAGE = 512
DEFER_MS = 500  # a delivery whose webhook is at its bound here waits this long, then queues again
USER_AGENT = "Chatspark-Webhooks/1.0"


class _Sweep:
    """Where a relay is in its slow sweep of every registered outbox (cluster mode)."""

    def __init__(self) -> None:
        self.position = 0
        self._next_cycle = 0.0  # monotonic time the next full cycle may start

    def due(self) -> bool:
        return self.position > 0 or time.monotonic() >= self._next_cycle

    def advance(self, read: int) -> None:
        if read < SWEEP_PAGE:  # the end of the registry: the next cycle in SWEEP_SECONDS
            self.position, self._next_cycle = 0, time.monotonic() + SWEEP_SECONDS
        else:
            self.position += read


def signatures(secret: str, body: bytes, timestamp: str) -> dict[str, str]:
    """The two signature headers: over the raw body, and over `<timestamp>.<raw body>`."""
    key = secret.encode()
    return {
        "X-ChatSpark-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-ChatSpark-Signature-Timestamped": "v1=" + hmac.new(key, timestamp.encode() + b"." + body,
                                                              hashlib.sha256).hexdigest(),
    }


class WebhookDelivery:
    def __init__(self, store: Store, config: WebhooksConfig) -> None:
        self.store = store
        self.config = config
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._running: dict[str, QueuedDelivery] = {}  # queue entry -> delivery, attempts in flight here
        self._busy: dict[int, int] = {}  # webhook id -> attempts in flight here
        self._http: tuple[aiohttp.ClientSession, GuardedResolver] | None = None

    async def run(self) -> None:
        """Forever (cancelled at shutdown: an attempt cut short is taken over by another replica)."""
        while True:
            try:
                await self.store.webhooks.ensure_group()
                break
            except StoreUnavailable:
                await anyio.sleep(1)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._relay)
                tasks.start_soon(self._move_retries)
                tasks.start_soon(self._keep_claims)
                tasks.start_soon(self._end_expired)
                await self._deliver(tasks)
        finally:
            if self._http is not None:
                with anyio.CancelScope(shield=True):
                    await self._http[0].close()
                    await self._http[1].close()

    def _client(self) -> tuple[aiohttp.ClientSession, GuardedResolver]:
        """The HTTP client, made at the first attempt: aiohttp's import (~0.2 s) does not delay a start."""
        if self._http is None:
            import aiohttp

            from chatspark.knowledge.ssrf import GuardedResolver

            guard = GuardedResolver(allow_private=self.config.allow_private_urls)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=guard, limit=self.config.concurrency),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # a proxy would connect on our behalf, past the guard
                headers={"User-Agent": USER_AGENT},
            )
            self._http = (session, guard)
        return self._http

    # -- outbox -> deliveries ----------------------------------------------------------------------

    async def _relay(self) -> None:
        webhooks = self.store.webhooks
        sweep = _Sweep()
        while True:
            try:
                if webhooks.cluster:  # outboxes in many slots: the hinted ones polled, all swept slowly
                    found = await self._relay_hinted(sweep)
                    await anyio.sleep(0.2 if not found else RELAY_PAUSE if found < RELAY_BATCH else 0)
                    continue
                # One outbox: the read waits for its next event.
                entries = await webhooks.pending_events([webhooks.layout.webhook_outbox()], RELAY_BATCH, block_ms=1000)
                if entries:
                    await webhooks.fan_out(entries, await webhooks.all(), now_ms(), self.config.keep_deliveries_seconds)
                if 0 < len(entries) < RELAY_BATCH:
                    await anyio.sleep(RELAY_PAUSE)
            except StoreUnavailable:
                await anyio.sleep(1)
            except Exception:  # a bug must not stop deliveries (nor, through the task group, the app)
                log.exception("webhook relay failed; trying again")
                await anyio.sleep(1)

    async def _relay_hinted(self, sweep: _Sweep) -> int:
        """One round in cluster mode: the shared outbox, the hinted ones and a page of the sweep;
        returns the most events found in one outbox."""
        webhooks = self.store.webhooks
        hinted = await webhooks.hinted_outboxes()
        polled = dict.fromkeys([webhooks.layout.webhook_outbox(), *(o for o, _ in hinted)])
        if sweep.due():
            page = await webhooks.registered_outboxes(sweep.position, SWEEP_PAGE)
            sweep.advance(len(page))
            polled.update(dict.fromkeys(page))
        entries = await webhooks.pending_events(list(polled), RELAY_BATCH)
        if entries:
            await webhooks.fan_out(entries, await webhooks.all(), now_ms(), self.config.keep_deliveries_seconds)
        read = Counter(e.outbox for e in entries)
        await webhooks.clear_hints([(o, hint) for o, hint in hinted if read[o] < RELAY_BATCH])
        return max(read.values(), default=0)

    async def _end_expired(self) -> None:
        """Reports expired conversations (`conversation.ended`): a turn's write reports those of its
        agent, this the agents that have no new turns. One replica per interval does it."""
        interval = self.config.expired_sweep_seconds
        while True:
            await anyio.sleep(interval)
            try:
                if not await self.store.conversation_index.take_sweep(self.consumer, int(interval * 1000)):
                    continue
                ids = await self.store.agents.ids()
                for start in range(0, len(ids), 200):
                    await self.store.conversation_index.end_expired(ids[start : start + 200], now_ms())
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("sweeping expired conversations failed; trying again")

    async def _move_retries(self) -> None:
        interval = max(0.05, min(0.5, min(self.config.retry_seconds, default=1.0) / 4))
        while True:
            try:
                await self.store.webhooks.move_due(now_ms())
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("moving due webhook retries failed; trying again")
            await anyio.sleep(interval)

    async def _keep_claims(self) -> None:
        while True:
            await anyio.sleep(self.config.claim_idle_seconds / 3)
            try:
                await self.store.webhooks.keep_claimed(self.consumer, list(self._running))
            except StoreUnavailable:
                pass

    # -- the queue -> attempts ---------------------------------------------------------------------

    async def _deliver(self, tasks: anyio.abc.TaskGroup) -> None:
        idle_ms = int(self.config.claim_idle_seconds * 1000)
        next_sweep = 0.0
        while True:
            free = self.config.concurrency - len(self._running)
            if free <= 0:
                await anyio.sleep(0.05)
                continue
            try:
                found: list[QueuedDelivery] = []
                if time.monotonic() >= next_sweep:
                    found = await self.store.webhooks.orphaned_deliveries(self.consumer, idle_ms, free)
                    next_sweep = time.monotonic() + self.config.claim_idle_seconds / 3
                if not found:
                    found = await self.store.webhooks.next_deliveries(self.consumer, free, block_ms=500)
            except StoreUnavailable:
                await anyio.sleep(1)
                continue
            except Exception:
                log.exception("reading the webhook delivery queue failed; trying again")
                await anyio.sleep(1)
                continue
            for queued in found:
                if queued.entry not in self._running:
                    self._running[queued.entry] = queued
                    tasks.start_soon(self._attempt, queued)

    async def _attempt(self, queued: QueuedDelivery) -> None:
        webhooks = self.store.webhooks
        try:
            delivery, webhook = await webhooks.attempt(queued)
            if delivery is None or webhook is None or not webhook.active:
                await webhooks.record(queued, queued.webhook_id, "drop", now=now_ms(),
                                      deactivate_after=self.config.deactivate_after)
                return
            hook = webhook.record
            if delivery.status != "pending":
                await webhooks.record(queued, hook.id, "skip", now=now_ms(), deactivate_after=self.config.deactivate_after)
                return
            if self._busy.get(hook.id, 0) >= self.config.per_webhook_concurrency:
                await webhooks.record(queued, hook.id, "defer", next_attempt=now_ms() + DEFER_MS, now=now_ms(),
                                      deactivate_after=self.config.deactivate_after)
                return
            metrics.WEBHOOK_LAG.observe(max(0, now_ms() - (delivery.next_attempt or delivery.created)) / 1000)
            self._busy[hook.id] = self._busy.get(hook.id, 0) + 1
            try:
                status = await self._post(hook, delivery)
            finally:
                self._busy[hook.id] -= 1
                if not self._busy[hook.id]:
                    del self._busy[hook.id]
            await self._record(queued, hook, delivery, status)
        except StoreUnavailable:
            # Left unacknowledged: attempted again (here or elsewhere) once idle past claim_idle_seconds.
            log.warning("webhook delivery %s paused: the store is unreachable", queued.delivery_id)
        except Exception:  # left unacknowledged too; a bug here must not stop the other deliveries
            log.exception("webhook delivery %s failed on our side", queued.delivery_id)
        finally:
            self._running.pop(queued.entry, None)

    async def _record(self, queued: QueuedDelivery, hook: WebhookRecord, delivery: DeliveryRecord,
                      status: int | None) -> None:
        now = now_ms()
        schedule = self.config.retry_seconds
        if status is not None and 200 <= status < 300:
            outcome, next_attempt = "ok", None
        elif delivery.attempts < len(schedule):  # this was attempt number attempts + 1
            delay = schedule[delivery.attempts] * random.uniform(0.8, 1.2)
            outcome, next_attempt = "retry", now + int(delay * 1000)
        else:
            outcome, next_attempt = "failed", None
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        result = await self.store.webhooks.record(
            queued, hook.id, outcome, status_code=status, next_attempt=next_attempt, now=now,  # type: ignore[arg-type]
            deactivate_after=self.config.deactivate_after,
        )
        if result == 2:
            log.warning("webhook %d deactivated after %d failed deliveries in a row", hook.id,
                        self.config.deactivate_after)

    async def _post(self, hook: WebhookRecord, delivery: DeliveryRecord) -> int | None:
        """The receiver's status, or None when it gave none in time (refused, unreachable, timed out)."""
        session, guard = self._client()
        import aiohttp
        from yarl import URL

        from chatspark.knowledge.ssrf import UrlRefused, check_url

        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-ChatSpark-Event": delivery.event,
            "X-ChatSpark-Delivery": delivery.id,
            "X-ChatSpark-Timestamp": timestamp,
            **signatures(hook.secret, delivery.body, timestamp),
        }
        try:
            target = check_url(hook.url)
            guard.check_host(target.host)  # an IP literal is connected to without the resolver
            with anyio.fail_after(self.config.timeout_seconds):
                async with session.post(URL(target.url, encoded=True), data=delivery.body, headers=headers,
                                        allow_redirects=False) as response:
                    return response.status
        except UrlRefused as refused:
            log.info("webhook %d delivery %s refused: %s", hook.id, delivery.id, refused.reason)
        except TimeoutError:
            log.info("webhook %d delivery %s: no answer within %gs", hook.id, delivery.id, self.config.timeout_seconds)
        except (aiohttp.ClientError, OSError) as exc:
            log.info("webhook %d delivery %s failed: %s", hook.id, delivery.id, type(exc).__name__)
        return None
