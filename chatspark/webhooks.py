"""Webhooks: the rules of registering, changing and removing them, their deliveries as the API shows
them, and the wire types of both. Delivery itself is `webhook_delivery.py`; how an event is
enqueued atomically with the change it reports is in `store/webhooks.py`."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from chatspark import errors
from chatspark.clock import iso, now_ms
from chatspark.config import WebhooksConfig
from chatspark.pagination import Cursors, PageQuery, numeric
from chatspark.schemas import SourceUrl
from chatspark.store import Store
from chatspark.store.keys import KeyMode
from chatspark.store.webhooks import DeliveryRecord, Webhook, WebhookRecord
from chatspark.webhook_events import EventType
from chatspark.wire import Request, Wire

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Events = Annotated[list[EventType], Meta(min_length=1, max_length=20)]
AgentIds = Annotated[list[Annotated[int, Meta(ge=1, le=10**18)]], Meta(max_length=1000)]
SECRET_PREFIX = "whsec_"


class NewWebhook(Request):
    name: Name
    url: SourceUrl
    events: Events
    agent_ids: AgentIds = []  # empty: events of every agent


class WebhookChanges(Request):
    name: Name | UnsetType = UNSET
    url: SourceUrl | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    agent_ids: AgentIds | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET


class WebhookView(Wire):
    id: int
    name: str
    url: str
    events: list[EventType]
    agent_ids: list[int]
    is_active: bool
    created_at: str
    updated_at: str


class WebhookEnvelope(Wire):
    webhook: WebhookView


class WebhookCreated(Wire):
    webhook: WebhookView
    secret: str  # shown only here


class WebhooksPage(Wire):
    webhooks: list[WebhookView]
    next_cursor: str | None


class DeliveryView(Wire):
    id: str
    event: EventType
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    next_attempt_at: str | None
    created_at: str


class DeliveriesPage(Wire):
    deliveries: list[DeliveryView]
    next_cursor: str | None


class Webhooks:
    def __init__(self, store: Store, cursors: Cursors, config: WebhooksConfig) -> None:
        self.store = store
        self.cursors = cursors
        self.config = config

    async def register(self, body: NewWebhook, mode: KeyMode) -> tuple[WebhookView, str]:
        """The new webhook and its signing secret (the only time the secret is shown)."""
        self._check_url(body.url, mode)
        now = now_ms()
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        record = WebhookRecord(
            id=await self.store.webhooks.next_id(), name=body.name, url=body.url, events=_unique(body.events),
            agent_ids=sorted(set(body.agent_ids)), secret=secret, created=now, updated=now,
        )
        await self.store.webhooks.save(record, new=True, active=True, now=now)
        return view(Webhook(record=record, active=True)), secret

    async def get(self, webhook_id: int) -> Webhook:
        found = await self.store.webhooks.get(webhook_id)
        if found is None:
            raise not_found()
        return found

    async def list(self, page: PageQuery) -> WebhooksPage:
        shown, next_cursor = await self.cursors.page(
            "webhooks", page, lambda after, n: self.store.webhooks.list(numeric(after), n),
            lambda row: (row.record.created, row.record.id),
        )
        return WebhooksPage(webhooks=[view(w) for w in shown], next_cursor=next_cursor)

    async def update(self, webhook_id: int, changes: WebhookChanges, mode: KeyMode) -> WebhookView:
        """Changes the fields sent; `isActive: true` re-enables a deactivated webhook (its count of
        failed deliveries starts again from 0)."""
        current = await self.get(webhook_id)
        if changes.url is not UNSET:
            self._check_url(changes.url, mode)
        now = now_ms()
        record = msgspec.structs.replace(
            current.record,
            name=current.record.name if changes.name is UNSET else changes.name,
            url=current.record.url if changes.url is UNSET else changes.url,
            events=current.record.events if changes.events is UNSET else _unique(changes.events),
            agent_ids=current.record.agent_ids if changes.agent_ids is UNSET else sorted(set(changes.agent_ids)),
            updated=now,
        )
        active = None if changes.is_active is UNSET else changes.is_active
        if not await self.store.webhooks.save(record, new=False, active=active, now=now):
            raise not_found()
        return view(Webhook(record=record, active=current.active if active is None else active))

    async def delete(self, webhook_id: int) -> None:
        if not await self.store.webhooks.delete(webhook_id):
            raise not_found()

    async def deliveries(self, webhook_id: int, page: PageQuery) -> DeliveriesPage:
        await self.get(webhook_id)
        shown, next_cursor = await self.cursors.page(
            f"deliveries:{webhook_id}", page, lambda after, n: self.store.webhooks.deliveries(webhook_id, after, n),
            lambda row: (row.created, row.id),
        )
        return DeliveriesPage(deliveries=[delivery_view(d) for d in shown], next_cursor=next_cursor)

    def _check_url(self, url: str, mode: KeyMode) -> None:
        """https for live keys; plain http (test keys) and private addresses only when the deployment
        allows private URLs. Without a lookup, like training URLs: every delivery checks the address
        it connects to (`GuardedResolver`)."""
        from chatspark.knowledge.ssrf import UrlRefused, check_url, refused_host  # aiohttp: not at start

        try:
            target = check_url(url)
        except UrlRefused as refused:
            raise errors.ValidationFailed.field("url", refused.reason) from None
        if target.scheme != "https" and (mode == "live" or not self.config.allow_private_urls):
            raise errors.ValidationFailed.field("url", "must be an https URL")
        problem = None if self.config.allow_private_urls else refused_host(target.host)
        if problem:
            raise errors.ValidationFailed.field("url", problem)


def not_found() -> errors.ResourceNotFound:
    return errors.ResourceNotFound("No such webhook.")


def _unique(events: list[EventType]) -> list[str]:
    return list(dict.fromkeys(events))


def view(webhook: Webhook) -> WebhookView:
    r = webhook.record
    return WebhookView(
        id=r.id, name=r.name, url=r.url, events=r.events, agent_ids=r.agent_ids,  # type: ignore[arg-type]
        is_active=webhook.active, created_at=iso(r.created), updated_at=iso(r.updated),
    )


def delivery_view(d: DeliveryRecord) -> DeliveryView:
    return DeliveryView(
        id=d.id, event=d.event, status=d.status, attempts=d.attempts,  # type: ignore[arg-type]
        last_status_code=d.last_status_code,
        next_attempt_at=None if d.next_attempt is None else iso(d.next_attempt), created_at=iso(d.created),
    )
