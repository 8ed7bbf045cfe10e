"""Every endpoint as a `Call`: path, body, idempotency and how its answer becomes a typed value.
The sync and async resources only run these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from chatspark_client._core import Call, agent_path, body, new_idempotency_key, query
from chatspark_client.types import (
    Agent, Analytics, ChatResponse, Conversation, ConversationSummary, Feedback, Lead, Message, TrainingSource, Webhook,
)

AgentId = int | str


def _replayed(headers: Any) -> bool:
    return headers.get("idempotent-replayed") == "true"


def chat(agent_id: AgentId, message: str, conversation_id: str | None, temperature: float | None,
         idempotency_key: str | None, stream: bool) -> Call:
    payload = body(message=message, conversation_id=conversation_id, temperature=temperature)
    if stream:
        payload["stream"] = True
    return Call("POST", f"{agent_path(agent_id)}/chat", json=payload, resendable=True,
                idempotency_key=idempotency_key or new_idempotency_key(),
                parse=lambda data, headers: ChatResponse.from_json(data, replayed=_replayed(headers)))


def _page(path: str, key: str, item: Any, limit: int | None, cursor: str | None, **params: Any) -> Call:
    return Call("GET", path, params=query(limit=limit, cursor=cursor, **params), resendable=True, page_key=key,
                parse=lambda data, headers: item(data))


def _get(path: str, key: str, item: Any) -> Call:
    return Call("GET", path, resendable=True, parse=lambda data, headers: item(data[key]))


def _delete(path: str) -> Call:
    return Call("DELETE", path, resendable=True, parse=lambda data, headers: None)


# --- agents


def agents_list(limit: int | None, cursor: str | None) -> Call:
    return _page("/agents", "agents", Agent.from_json, limit, cursor)


def agents_get(agent_id: AgentId) -> Call:
    return _get(agent_path(agent_id), "agent", Agent.from_json)


def agents_create(name: str, idempotency_key: str | None, fields: dict[str, Any]) -> Call:
    return Call("POST", "/agents", json=body(name=name, **fields), resendable=True,
                idempotency_key=idempotency_key or new_idempotency_key(),
                parse=lambda data, headers: Agent.from_json(data["agent"]))


def agents_update(agent_id: AgentId, fields: dict[str, Any]) -> Call:
    # PATCH sets the fields sent: sending it twice gives the same agent.
    return Call("PATCH", agent_path(agent_id), json=body(**fields), resendable=True,
                parse=lambda data, headers: Agent.from_json(data["agent"]))


def agents_delete(agent_id: AgentId) -> Call:
    return _delete(agent_path(agent_id))


# --- conversations and feedback


def _conversation(agent_id: AgentId, conversation_id: str) -> str:
    return f"{agent_path(agent_id)}/conversations/{conversation_id}"


def conversations_list(agent_id: AgentId, limit: int | None, cursor: str | None) -> Call:
    return _page(f"{agent_path(agent_id)}/conversations", "conversations", ConversationSummary.from_json, limit, cursor)


def conversations_get(agent_id: AgentId, conversation_id: str) -> Call:
    return _get(_conversation(agent_id, conversation_id), "conversation", Conversation.from_json)


def conversations_messages(agent_id: AgentId, conversation_id: str, limit: int | None, cursor: str | None) -> Call:
    return _page(f"{_conversation(agent_id, conversation_id)}/messages", "messages", Message.from_json, limit, cursor)


def conversations_delete(agent_id: AgentId, conversation_id: str) -> Call:
    return _delete(_conversation(agent_id, conversation_id))


def feedback(agent_id: AgentId, conversation_id: str, message_id: str, rating: str | None) -> Call:
    return Call("POST", f"{_conversation(agent_id, conversation_id)}/messages/{message_id}/feedback",
                json={"rating": rating}, resendable=True, parse=lambda data, headers: Feedback.from_json(data))


# --- leads, analytics


def leads_list(agent_id: AgentId, limit: int | None, cursor: str | None) -> Call:
    return _page(f"{agent_path(agent_id)}/leads", "leads", Lead.from_json, limit, cursor)


def leads_create(agent_id: AgentId, idempotency_key: str | None, fields: dict[str, Any]) -> Call:
    return Call("POST", f"{agent_path(agent_id)}/leads", json=body(**fields), resendable=True,
                idempotency_key=idempotency_key or new_idempotency_key(),
                parse=lambda data, headers: Lead.from_json(data["lead"]))


def leads_delete(agent_id: AgentId, lead_id: str) -> Call:
    return _delete(f"{agent_path(agent_id)}/leads/{lead_id}")


def analytics_get(agent_id: AgentId, start: str | dt.date | None, end: str | dt.date | None) -> Call:
    def day(value: str | dt.date | None) -> str | None:
        return value.isoformat() if isinstance(value, dt.date) else value

    return Call("GET", f"{agent_path(agent_id)}/analytics", params=query(start=day(start), end=day(end)),
                resendable=True, parse=lambda data, headers: Analytics.from_json(data))


# --- training


def training_list(agent_id: AgentId, limit: int | None, cursor: str | None) -> Call:
    return _page(f"{agent_path(agent_id)}/training", "sources", TrainingSource.from_json, limit, cursor)


def training_get(agent_id: AgentId, training_id: int) -> Call:
    return _get(f"{agent_path(agent_id)}/training/{training_id}", "source", TrainingSource.from_json)


def training_add(agent_id: AgentId, source: str, type: str, data: str | None, url: str | None,
                 idempotency_key: str | None) -> Call:
    return Call("POST", f"{agent_path(agent_id)}/training", json=body(source=source, type=type, data=data, url=url),
                resendable=True, idempotency_key=idempotency_key or new_idempotency_key(),
                parse=lambda data, headers: TrainingSource.from_json(data["source"]))


def training_delete(agent_id: AgentId, training_id: int) -> Call:
    return _delete(f"{agent_path(agent_id)}/training/{training_id}")


# --- webhooks


def webhooks_list(limit: int | None, cursor: str | None) -> Call:
    return _page("/webhooks", "webhooks", Webhook.from_json, limit, cursor)


def webhooks_get(webhook_id: int) -> Call:
    return _get(f"/webhooks/{webhook_id}", "webhook", Webhook.from_json)


def webhooks_create(name: str, url: str, events: Sequence[str], agent_ids: Sequence[int] | None,
                    idempotency_key: str | None) -> Call:
    # The key is sent as on every create, but the server does not dedupe webhooks by it (yet), so a
    # create whose answer was lost on the network is not sent again: it could register two.
    return Call("POST", "/webhooks", json=body(name=name, url=url, events=list(events), agent_ids=None if agent_ids is None else list(agent_ids)),
                idempotency_key=idempotency_key or new_idempotency_key(), resendable=False,
                parse=lambda data, headers: Webhook.from_json(data["webhook"], secret=data.get("secret")))


def webhooks_update(webhook_id: int, fields: dict[str, Any]) -> Call:
    return Call("PATCH", f"/webhooks/{webhook_id}", json=body(**fields), resendable=True,
                parse=lambda data, headers: Webhook.from_json(data["webhook"]))


def webhooks_delete(webhook_id: int) -> Call:
    return _delete(f"/webhooks/{webhook_id}")
