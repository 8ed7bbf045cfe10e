"""The webhook event types and the `data` each carries (the contract's "Webhooks" section).

Plain wire types, free of the store and of HTTP: producers build one, the store enqueues it
atomically with the change it reports (`chatspark/store/webhooks.py` says how).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from chatspark.wire import Wire

EventType = Literal[
    "lead.captured", "conversation.started", "conversation.ended", "message.sent",
    "agent.updated", "training.completed", "training.failed",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


class AgentUpdated(Wire):
    agent_id: int
    updated_at: str
    changes: list[str]  # the wire names of the fields whose value changed


class TrainingFinished(Wire):
    """`training.completed` and `training.failed`."""

    training_id: int
    agent_id: int
    source: str
    status: Literal["completed", "failed"]
    data_count: int | None
    error: str | None


class MessageSent(Wire):
    """`message.sent`: one per message of a completed turn (the user's, then the assistant's)."""

    message_id: str
    conversation_id: str
    agent_id: int
    role: Literal["user", "assistant"]
    content: str
    created_at: str


class ConversationStarted(Wire):
    conversation_id: str
    agent_id: int
    created_at: str


class ConversationEnded(Wire):
    conversation_id: str
    agent_id: int
    ended_at: str
    reason: Literal["deleted", "expired", "agent_deleted"]


class LeadCaptured(Wire):
    """`lead.captured`: the lead's fields, with `leadId`."""

    lead_id: str
    agent_id: int
    name: str | None
    email: str | None
    phone: str | None
    company_name: str | None
    message: str | None
    conversation_id: str | None
    created_at: str


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One event to enqueue: its type, the agent it concerns (webhooks filter on it) and its `data`,
    already encoded (the bytes every delivery of it signs and sends)."""

    type: EventType
    agent_id: int
    data: bytes
    at: int  # ms since the epoch: the envelope's `timestamp`

    @classmethod
    def of(cls, type: EventType, agent_id: int, data: Wire, at: int) -> Event:
        return cls(type=type, agent_id=agent_id, data=msgspec.json.encode(data), at=at)
