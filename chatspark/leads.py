"""Leads: contact details a person left with an agent (through the API or the widget's form).

The rules of capturing one (validation, the conversation it came from, idempotency), listing them
newest first, and erasing one. Leads belong to their agent, never expire, and are counted per UTC day.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Annotated

import msgspec
from msgspec import Meta

from chatspark import errors
from chatspark.agent_registry import AgentRegistry
from chatspark.clock import iso, now_ms
from chatspark.conversations import CONVERSATION_ID
from chatspark.conversations import not_found as conversation_not_found
from chatspark.pagination import Cursors, PageQuery
from chatspark.schemas import decode_body
from chatspark.store import Store
from chatspark.store.errors import IdempotencyMismatch
from chatspark.store.leads import LeadRecord
from chatspark.webhook_events import Event, LeadCaptured
from chatspark.wire import Request, Wire

# An address as HTML's `type=email` checks it, with a dot in the domain; ASCII only (an
# internationalised domain is written in its punycode form).
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
# Digits with the usual separators, an optional leading `+` or `(`: `+1 (555) 010-9999`, `030 1234567`.
PHONE_PATTERN = r"^[+(]?[0-9][0-9 ()./-]{2,38}[0-9]$"

Name = Annotated[str, Meta(max_length=200)]
Email = Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)]
Phone = Annotated[str, Meta(max_length=40, pattern=PHONE_PATTERN)]
Message = Annotated[str, Meta(max_length=5000)]
ConversationRef = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{32}$")]
LEAD_ID = re.compile(r"^lead_[A-Za-z0-9_-]{1,64}$")


class LeadFields(Request):
    """What a person leaves: at least an `email` or a `phone`. `name`, `companyName` and `message`
    are stored trimmed, and as null when blank."""

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    company_name: Name | None = None
    message: Message | None = None


class NewLead(LeadFields):
    """POST /agents/{id}/leads: the fields, and the conversation (of this agent) they came from."""

    conversation_id: ConversationRef | None = None

    def fields(self) -> LeadFields:
        return LeadFields(name=self.name, email=self.email, phone=self.phone, company_name=self.company_name,
                          message=self.message)


class Lead(Wire):
    id: str
    agent_id: int
    name: str | None
    email: str | None
    phone: str | None
    company_name: str | None
    message: str | None
    conversation_id: str | None
    created_at: str


class LeadEnvelope(Wire):
    lead: Lead


class LeadsPage(Wire):
    leads: list[Lead]
    next_cursor: str | None


class Captured(msgspec.Struct, frozen=True):
    lead: Lead
    replayed: bool  # True: the answer of an earlier request with the same idempotency key


_canonical = msgspec.json.Encoder(order="sorted")


def not_found() -> errors.ResourceNotFound:
    return errors.ResourceNotFound("No such lead for this agent.")


class Leads:
    def __init__(self, store: Store, cursors: Cursors, agents: AgentRegistry) -> None:
        self.store = store
        self.cursors = cursors
        self.agents = agents

    async def create(
        self, agent_id: int, fields: LeadFields, *, conversation_id: str | None = None,
        caller: str = "", idempotency_key: str | None = None,
    ) -> Captured:
        """Captures a lead for an existing agent. `fields` are validated here whoever built them;
        `conversation_id`, when given, must be a stored conversation of this agent. With an
        `idempotency_key` (scoped per `caller`: the API key's id, or the widget's visitor) a repeat
        answers the first lead (`replayed`), another body is an IdempotencyConflict.

        Raises AgentNotFound (also when the agent was deleted while this ran: the lead is not kept),
        ValidationFailed (details name each field), ResourceNotFound (no such conversation),
        IdempotencyConflict. The widget's endpoint checks the visitor and the origin; this the rest."""
        checked = _checked(fields)
        await self.agents.cached(agent_id)
        if conversation_id is not None:
            if not CONVERSATION_ID.match(conversation_id):
                raise errors.ValidationFailed.field("conversationId", "is not a conversation id")
            if await self.store.conversations.agent_of(conversation_id) != agent_id:
                raise conversation_not_found()
        digest = None
        if idempotency_key is not None:
            digest = hashlib.sha256(f"{caller}\0{idempotency_key}".encode()).hexdigest()
        body_digest = hashlib.sha256(_canonical.encode([checked, conversation_id])).hexdigest()
        now = now_ms()
        record = LeadRecord(
            id="lead_" + secrets.token_urlsafe(18), name=checked.name, email=checked.email, phone=checked.phone,
            company_name=checked.company_name, message=checked.message, conversation_id=conversation_id, created=now,
        )
        try:
            stored = await self.store.leads.add(
                agent_id, record, utc_day(now), idempotency_digest=digest, body_digest=body_digest,
                event=Event.of("lead.captured", agent_id, captured(agent_id, record), now),
            )
        except IdempotencyMismatch:
            raise errors.IdempotencyConflict(
                "This Idempotency-Key was used with a different request, or the lead it created was deleted."
            ) from None
        if stored.outcome == "created" and await self.store.agents.get(agent_id) is None:
            # The agent was deleted meanwhile (the check above may be a second old, or raced it), and
            # its deletion may have swept its leads before this one landed: no person's data may stay
            # behind where no API can reach it to erase it.
            await self.store.leads.delete_all(agent_id)
            raise errors.AgentNotFound()
        return Captured(view(agent_id, stored.record), stored.outcome == "replayed")

    async def list(self, agent_id: int, page: PageQuery) -> LeadsPage:
        """Newest first; a page position is (creation ms, lead id)."""
        shown, next_cursor = await self.cursors.page(
            f"leads:{agent_id}", page, lambda after, n: self.store.leads.list(agent_id, after, n),
            lambda row: (row.created, row.id),
        )
        return LeadsPage(leads=[view(agent_id, r) for r in shown], next_cursor=next_cursor)

    async def delete(self, agent_id: int, lead_id: str) -> None:
        """Erases the lead from the store. Raises ResourceNotFound."""
        if not LEAD_ID.match(lead_id) or not await self.store.leads.delete(agent_id, lead_id):
            raise not_found()

    async def daily_counts(self, agent_id: int, days: list[str]) -> list[int]:
        """Leads captured on each UTC day (`2026-12-02`) of `days`, deleted ones included (for analytics)."""
        return await self.store.leads.daily_counts(agent_id, days)


def _checked(fields: LeadFields) -> LeadFields:
    """`fields` validated as a decoded body would be (a caller may have built them in code), blanks
    stored as null, and an email or a phone present."""
    valid = decode_body(msgspec.json.encode(fields), LeadFields)
    valid = msgspec.structs.replace(
        valid, name=_blank_as_none(valid.name), company_name=_blank_as_none(valid.company_name),
        message=_blank_as_none(valid.message),
    )
    if valid.email is None and valid.phone is None:
        problem = "an email or a phone is required"
        raise errors.ValidationFailed(
            f"email, phone: {problem}", details=errors.ErrorDetails(fields={"email": [problem], "phone": [problem]})
        )
    return valid


def _blank_as_none(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def utc_day(ms: int) -> str:
    """`2026-12-02`: the UTC day of a time, the unit leads are counted in."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def captured(agent_id: int, record: LeadRecord) -> LeadCaptured:
    """The `lead.captured` event's data: the lead's fields, with `leadId`."""
    return LeadCaptured(
        lead_id=record.id, agent_id=agent_id, name=record.name, email=record.email, phone=record.phone,
        company_name=record.company_name, message=record.message, conversation_id=record.conversation_id,
        created_at=iso(record.created),
    )


def view(agent_id: int, record: LeadRecord) -> Lead:
    return Lead(
        id=record.id, agent_id=agent_id, name=record.name, email=record.email, phone=record.phone,
        company_name=record.company_name, message=record.message, conversation_id=record.conversation_id,
        created_at=iso(record.created),
    )
