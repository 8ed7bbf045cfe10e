"""The OpenAPI 3.1 document of the HTTP API: one table of operations, schemas from the msgspec wire types."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

from chatspark import errors
from chatspark.errors import ERROR_STATUS, ErrorEnvelope  # ERROR_STATUS: also read by the tests from here
from chatspark.agents import AgentChanges
from chatspark.leads import LeadEnvelope, LeadsPage, NewLead
from chatspark.analytics import AgentAnalytics
from chatspark.openai_wire import (
    REFUSED,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ModelList,
    OpenAIError,
    harmless_values,
)
from chatspark.schemas import (
    NON_SPACE_PATTERN,
    AddSource,
    AgentEnvelope,
    AgentsPage,
    ChatRequest,
    ChatResponse,
    ConversationEnvelope,
    ConversationsPage,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    MessagesPage,
    SourceEnvelope,
    SourcesPage,
    StreamDelta,
    StreamDone,
    StreamFailure,
    WidgetChatRequest,
    WidgetSession,
    WidgetSessionRequest,
)
from chatspark.webhooks import (
    DeliveriesPage,
    NewWebhook,
    WebhookChanges,
    WebhookCreated,
    WebhookEnvelope,
    WebhooksPage,
)

REF = "#/components/schemas/{name}"


# Errors every authenticated operation can answer.
_AUTHENTICATED = (
    errors.ValidationFailed,  # two Authorization headers
    errors.ApiKeyMissing,
    errors.ApiKeyInvalid,
    errors.ApiKeyExpired,
    errors.ApiKeyRevoked,
    errors.ScopeInsufficient,
    errors.RateLimitExceeded,
    errors.ServiceUnavailable,
    errors.InternalError,
)
# Errors of an operation on /agents/{agent_id}…; an unroutable path (say, an id with a `/`) is 404 too.
_ON_AGENT = (errors.AgentAccessDenied, errors.AgentNotFound, errors.ResourceNotFound)
_WITH_BODY = (errors.ValidationFailed, errors.PayloadTooLarge, errors.UnsupportedMediaType)


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: another operation that takes values from this success answer (or request)."""

    name: str
    method: str
    path: str
    parameters: tuple[tuple[str, str], ...]  # (parameter, runtime expression)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answer: type | None  # the success body; None: no body
    status: int = 200
    scope: str | None = None  # None: no authentication
    body: type | None = None
    failures: tuple[type[errors.ApiError], ...] = ()  # its error answers beyond the ones every operation has
    paged: bool = False  # takes `limit` and `cursor`
    idempotent: bool = False  # honours `Idempotency-Key`
    required: tuple[str, ...] = ()  # body fields this operation requires beyond the type's own
    one_of_required: tuple[str, ...] = ()  # body fields of which at least one must be a string
    links: tuple[Link, ...] = ()  # where the ids and cursors of its success answer lead
    also: tuple[tuple[int, str], ...] = ()  # other success statuses with the same body: (status, when)
    widget: bool = False  # a browser's call: no key; an allowed `Origin`, answered with the CORS grant
    visitor: bool = False  # takes the visitor token (`Chatspark-Visitor`)
    query: tuple[dict[str, Any], ...] = ()  # its query parameters beyond the page's
    openai: bool = False  # the OpenAI-compatible surface: errors in OpenAI's shape (OpenAIError)


AGENTS = "/api/v1/agents"
AGENT = "/api/v1/agents/{agent_id}"
CONVERSATIONS = f"{AGENT}/conversations"
CONVERSATION = f"{CONVERSATIONS}/{{conversation_id}}"
MESSAGES = f"{CONVERSATION}/messages"
FEEDBACK = f"{MESSAGES}/{{message_id}}/feedback"
TRAINING = f"{AGENT}/training"
SOURCE = f"{TRAINING}/{{training_id}}"
LEADS = f"{AGENT}/leads"
LEAD = f"{LEADS}/{{lead_id}}"
ANALYTICS = f"{AGENT}/analytics"
WIDGET = "/api/v1/widget/{agent_id}"
WIDGET_SESSION = f"{WIDGET}/session"
WIDGET_CHAT = f"{WIDGET}/chat"
WIDGET_MESSAGES = f"{WIDGET}/conversations/{{conversation_id}}/messages"
WIDGET_LEADS = f"{WIDGET}/leads"
# Errors every widget call can answer: the origin rule (403, and 404 for an unknown agent), the
# client address's limit, the store.
_WIDGET = (errors.AgentAccessDenied, errors.AgentNotFound, errors.RateLimitExceeded, errors.ServiceUnavailable,
           errors.InternalError)
_VISITOR = (errors.ApiKeyInvalid, errors.ResourceNotFound)
WEBHOOKS = "/api/v1/webhooks"
WEBHOOK = f"{WEBHOOKS}/{{webhook_id}}"
CHAT_COMPLETIONS = "/v1/chat/completions"

# Ids and cursors are server-issued; the links say which answer issues each and who takes it.
_SAME_AGENT = ("agent_id", "$request.path.agent_id")
_DAY = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_PERIOD = (
    {"name": "start", "in": "query", "required": False, "schema": _DAY,
     "description": "First UTC day (YYYY-MM-DD), included. Required with `end`; alone: up to today. Without "
                    "both: the current UTC month up to today."},
    {"name": "end", "in": "query", "required": False, "schema": _DAY,
     "description": "Last UTC day (YYYY-MM-DD), included; not before `start`, at most 366 days from it."},
)
_SAME_CONVERSATION = ("conversation_id", "$request.path.conversation_id")
_NEXT_CURSOR = ("cursor", "$response.body#/nextCursor")


def _agent_links(agent_id: str) -> tuple[Link, ...]:
    given = (("agent_id", agent_id),)
    return (
        Link("GetAgent", "get", AGENT, given),
        Link("UpdateAgent", "patch", AGENT, given),
        Link("DeleteAgent", "delete", AGENT, given),
        Link("Chat", "post", f"{AGENT}/chat", given),
        Link("ListConversations", "get", CONVERSATIONS, given),
    )


def _conversation_links(conversation_id: str) -> tuple[Link, ...]:
    given = (_SAME_AGENT, ("conversation_id", conversation_id))
    return (
        Link("GetConversation", "get", CONVERSATION, given),
        Link("ListMessages", "get", MESSAGES, given),
        Link("DeleteConversation", "delete", CONVERSATION, given),
    )


_ON_WEBHOOK = (errors.AgentAccessDenied, errors.ResourceNotFound)


def _webhook_links(webhook_id: str) -> tuple[Link, ...]:
    given = (("webhook_id", webhook_id),)
    return (
        Link("GetWebhook", "get", WEBHOOK, given),
        Link("UpdateWebhook", "patch", WEBHOOK, given),
        Link("DeleteWebhook", "delete", WEBHOOK, given),
        Link("ListDeliveries", "get", f"{WEBHOOK}/deliveries", given),
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/api/v1/health", "Is this replica able to serve (its store reachable)?", Health),
    Operation("get", "/openapi.json", "This document.", dict),
    Operation(
        "post",
        f"{AGENT}/chat",
        "One conversation turn, answered as JSON or (`stream: true`) as server-sent events.",
        ChatResponse,
        scope="chat",
        body=ChatRequest,
        idempotent=True,
        links=_conversation_links("$response.body#/conversationId")
        + (Link("RateMessage", "post", FEEDBACK, (_SAME_AGENT, ("conversation_id", "$response.body#/conversationId"),
                                                  ("message_id", "$response.body#/messageId"))),),
        failures=_ON_AGENT
        + _WITH_BODY
        + (
            errors.IdempotencyConflict,
            errors.ConversationBusy,
            errors.CreditsExhausted,
            errors.UpstreamError,
            errors.UpstreamTimeout,
        ),
    ),
    Operation("get", AGENTS, "The agents this key may use, newest first.", AgentsPage, scope="agents:read",
              paged=True, failures=(errors.ValidationFailed,),
              links=(Link("NextPage", "get", AGENTS, (_NEXT_CURSOR,)), *_agent_links("$response.body#/agents/0/id"))),
    Operation("post", AGENTS, "Create an agent.", AgentEnvelope, status=201, scope="agents:write", body=AgentChanges,
              idempotent=True, required=("name",),
              failures=_WITH_BODY + (errors.AgentAccessDenied, errors.IdempotencyConflict),
              links=_agent_links("$response.body#/agent/id")),
    Operation("get", AGENT, "One agent.", AgentEnvelope, scope="agents:read", failures=_ON_AGENT),
    Operation("patch", AGENT, "Change the fields sent.", AgentEnvelope, scope="agents:write", body=AgentChanges,
              failures=_ON_AGENT + _WITH_BODY),
    Operation("delete", AGENT, "Delete the agent and all its conversations.", None, status=204,
              scope="agents:write", failures=_ON_AGENT),
    Operation("get", CONVERSATIONS, "The agent's conversations, newest first.", ConversationsPage,
              scope="conversations:read", paged=True, failures=_ON_AGENT + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", CONVERSATIONS, (_SAME_AGENT, _NEXT_CURSOR)),
                     *_conversation_links("$response.body#/conversations/0/id"))),
    Operation("get", CONVERSATION, "Every stored exchange, oldest first.", ConversationEnvelope,
              scope="conversations:read", failures=_ON_AGENT),
    Operation("delete", CONVERSATION, "Delete a conversation.", None, status=204, scope="conversations:write",
              failures=_ON_AGENT),
    Operation("get", MESSAGES, "The conversation's messages (two per turn), oldest first.",
              MessagesPage, scope="conversations:read", paged=True, failures=_ON_AGENT + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", MESSAGES, (_SAME_AGENT, _SAME_CONVERSATION, _NEXT_CURSOR)),)),
    Operation("post", FEEDBACK, "Rate an assistant message.",
              FeedbackResponse, scope="feedback", body=FeedbackRequest, failures=_ON_AGENT + _WITH_BODY),
    Operation("get", TRAINING, "The agent's training sources, newest first.", SourcesPage, scope="training",
              paged=True, failures=_ON_AGENT + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", TRAINING, (_SAME_AGENT, _NEXT_CURSOR)),)),
    Operation("post", TRAINING, "Add a training source (201), or re-train the one with this `source` slug (200); "
              "indexed in the background.", SourceEnvelope, status=201, scope="training", body=AddSource,
              idempotent=True, failures=_ON_AGENT + _WITH_BODY + (errors.IdempotencyConflict,),
              also=((200, "An existing `source` slug re-trained (same id, back to `pending`)."),),
              links=(Link("GetSource", "get", SOURCE, (_SAME_AGENT, ("training_id", "$response.body#/source/id"))),
                     Link("DeleteSource", "delete", SOURCE,
                          (_SAME_AGENT, ("training_id", "$response.body#/source/id"))))),
    Operation("get", SOURCE, "One training source and its indexing status.", SourceEnvelope, scope="training",
              failures=_ON_AGENT),
    Operation("delete", SOURCE, "Delete a training source: its content stops answering at once.", None,
              status=204, scope="training", failures=_ON_AGENT),
    Operation("get", LEADS, "The agent's leads, newest first.", LeadsPage, scope="leads", paged=True,
              failures=_ON_AGENT + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", LEADS, (_SAME_AGENT, _NEXT_CURSOR)),
                     Link("DeleteLead", "delete", LEAD, (_SAME_AGENT, ("lead_id", "$response.body#/leads/0/id"))))),
    Operation("post", LEADS, "Capture a lead: at least an `email` or a `phone`; a `conversationId` must be one of "
              "this agent's stored conversations (else 404).", LeadEnvelope, status=201, scope="leads", body=NewLead,
              idempotent=True, one_of_required=("email", "phone"),
              failures=_ON_AGENT + _WITH_BODY + (errors.IdempotencyConflict,),
              links=(Link("DeleteLead", "delete", LEAD, (_SAME_AGENT, ("lead_id", "$response.body#/lead/id"))),)),
    Operation("get", ANALYTICS, "The agent's messages, conversations and leads per UTC day over a period, with "
              "unanswered turns, tokens by model and the median answer latency.", AgentAnalytics, scope="analytics",
              query=_PERIOD, failures=_ON_AGENT + (errors.ValidationFailed,)),
    Operation("delete", LEAD, "Erase a lead: its data leaves the store.", None, status=204, scope="leads",
              failures=_ON_AGENT),
    Operation("post", WIDGET_SESSION, "A browser's visitor token and what it may show of the public agent "
              "(optionally a verified user: `userId` + `hash`).", WidgetSession, body=WidgetSessionRequest,
              widget=True, failures=_WIDGET + _WITH_BODY),
    Operation("post", WIDGET_CHAT, "A visitor's turn, answered as the native chat is (JSON or server-sent events).",
              ChatResponse, body=WidgetChatRequest, idempotent=True, widget=True, visitor=True,
              failures=_WIDGET + _VISITOR + _WITH_BODY + (
                  errors.IdempotencyConflict, errors.ConversationBusy, errors.CreditsExhausted, errors.UpstreamError,
                  errors.UpstreamTimeout)),
    Operation("get", WIDGET_MESSAGES, "The messages of a conversation this visitor started, oldest first.",
              MessagesPage, paged=True, widget=True, visitor=True,
              failures=_WIDGET + _VISITOR + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", WIDGET_MESSAGES, (_SAME_AGENT, _SAME_CONVERSATION, _NEXT_CURSOR)),)),
    Operation("post", WIDGET_LEADS, "The widget's form: capture a lead as the server API does (at least an `email` "
              "or a `phone`); a `conversationId` must be one this visitor started.", LeadEnvelope, status=201,
              body=NewLead, idempotent=True, one_of_required=("email", "phone"), widget=True, visitor=True,
              failures=_WIDGET + _VISITOR + _WITH_BODY + (errors.IdempotencyConflict,)),
    *(Operation("options", path, "CORS preflight: 204 with the grant for an allowed origin, else refused.", None,
                status=204, widget=True, failures=_WIDGET[:2])
      for path in (WIDGET_SESSION, WIDGET_CHAT, WIDGET_MESSAGES, WIDGET_LEADS)),
    # Webhooks belong to the whole service: a key restricted to some agents gets AGENT_ACCESS_DENIED.
    Operation("get", WEBHOOKS, "The webhooks, newest first.", WebhooksPage, scope="webhooks", paged=True,
              failures=(errors.AgentAccessDenied, errors.ValidationFailed),
              links=(Link("NextPage", "get", WEBHOOKS, (_NEXT_CURSOR,)),
                     *_webhook_links("$response.body#/webhooks/0/id"))),
    Operation("post", WEBHOOKS, "Register a webhook; its signing `secret` is shown only in this answer.",
              WebhookCreated, status=201, scope="webhooks", body=NewWebhook,
              failures=_WITH_BODY + (errors.AgentAccessDenied,), links=_webhook_links("$response.body#/webhook/id")),
    Operation("get", WEBHOOK, "One webhook.", WebhookEnvelope, scope="webhooks", failures=_ON_WEBHOOK),
    Operation("patch", WEBHOOK, "Change the fields sent; `isActive: true` re-enables a deactivated webhook.",
              WebhookEnvelope, scope="webhooks", body=WebhookChanges, failures=_ON_WEBHOOK + _WITH_BODY),
    Operation("delete", WEBHOOK, "Remove a webhook; its pending deliveries are dropped.", None, status=204,
              scope="webhooks", failures=_ON_WEBHOOK),
    Operation("get", f"{WEBHOOK}/deliveries", "The webhook's recent deliveries, newest first.", DeliveriesPage,
              scope="webhooks", paged=True, failures=_ON_WEBHOOK + (errors.ValidationFailed,),
              links=(Link("NextPage", "get", f"{WEBHOOK}/deliveries", (("webhook_id", "$request.path.webhook_id"),
                                                                        _NEXT_CURSOR)),)),
    # OpenAI's SDKs, with the base URL `<service>/v1`: OpenAI's field names and error shape.
    Operation("post", CHAT_COMPLETIONS, "One conversation turn in OpenAI's Chat Completions shape (JSON, or "
              "`stream: true` for `chat.completion.chunk` events); `model` names the agent.", ChatCompletion,
              scope="chat", body=ChatCompletionRequest, idempotent=True, openai=True,
              failures=(errors.AgentAccessDenied, errors.AgentNotFound, errors.ResourceNotFound) + _WITH_BODY + (
                  errors.IdempotencyConflict, errors.ConversationBusy, errors.CreditsExhausted, errors.UpstreamError,
                  errors.UpstreamTimeout)),
    Operation("get", "/v1/models", "The agents this key may use, as models `agent:<id>` (scope `agents:read` or "
              "`chat`).", ModelList, scope="agents:read", openai=True),
)

_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "agent_id": {
        "description": "An agent id: `123` or `ag_123`.",
        "schema": {"type": "string", "pattern": "^(ag_)?[0-9]{1,18}$"},
    },
    "conversation_id": {
        "description": "An id the service minted (32 url-safe characters); any other id is unknown (404).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 128},
    },
    "training_id": {
        "description": "A training source id (from the list or the add answer).",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
    "lead_id": {
        "description": "A lead id (`lead_…`, from the list or the create answer); any other id is unknown (404).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 128},
    },
    "webhook_id": {
        "description": "A webhook id (from the list or the register answer).",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
    "message_id": {
        "description": "A message id from the conversation's messages.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 128},
    },
}
_PAGE_PARAMETERS = [
    {"name": "limit", "in": "query", "required": False, "description": "Page size.",
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    # JSON Schema cannot say "a value the server issued": the description and the `NextPage` links
    # say it; any other string, however well formed, is refused.
    {"name": "cursor", "in": "query", "required": False,
     "description": "Server-issued: the `nextCursor` of the previous page of this same list, as it came "
                    "(opaque and signed). Any other value, including another list's cursor, is 400 "
                    "VALIDATION_ERROR.",
     "schema": {"type": "string", "maxLength": 512}},
]
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays the first answer for the same key and body (24 h); another body is 409.",
    # 1–255 printable ASCII characters; no outer spaces, which HTTP would strip.
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"},
}
_ORIGIN = {
    "name": "Origin",
    "in": "header",
    "required": True,
    "description": "The page's origin (browsers send it): one of the agent's `allowedOrigins`, or the service's "
                   "own. Missing or any other: 403 AGENT_ACCESS_DENIED without CORS headers.",
    "schema": {"type": "string"},
}
_VISITOR_TOKEN = {
    "name": "Chatspark-Visitor",
    "in": "header",
    "required": True,
    "description": "The `visitorToken` of this agent's session. Missing, forged, expired or another agent's: 401.",
    "schema": {"type": "string", "maxLength": 1024},
}
_CONVERSATION = {
    "name": "Chatspark-Conversation-Id",
    "in": "header",
    "required": False,
    "description": "Continues this conversation (the header of an earlier answer) with the request's last "
                   "message; an unknown, expired or other agent's id is 404. Without it (and without "
                   "`metadata.conversation_id`) a new conversation starts.",
    "schema": {"type": "string"},
}
_REQUEST_ID = {
    "name": "x-request-id",
    "in": "header",
    "required": False,
    # Any value is accepted, so the schema admits any string: a pattern here would promise a 400
    # that never comes.
    "description": "Echoed when printable ASCII and at most 128 characters; otherwise replaced by one the "
                   "service mints (`req_…`). Never refused.",
    "schema": {"type": "string"},
}
_HEADERS = {
    "x-request-id": {"description": "The request's id, also in every log line about it.", "required": True,
                     "schema": {"type": "string"}},
    "X-RateLimit-Limit": {"description": "Requests allowed per window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in this window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the window resets.", "schema": {"type": "integer"}},
    "Chatspark-Mode": {"description": "The key's mode.", "schema": {"type": "string", "enum": ["live", "test"]}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    "Access-Control-Allow-Origin": {"description": "The request's origin, once the origin rule allowed it.",
                                    "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this answer replays an earlier request's.",
                            "schema": {"type": "string", "enum": ["true"]}},
    "Chatspark-Conversation-Id": {"description": "The conversation this turn was stored in; send it back to "
                                                 "continue it.", "schema": {"type": "string"}},
}
_STREAM_DESCRIPTION = (
    "With `stream: true`: `data: <json>` events, one per model delta (StreamDelta), then exactly one "
    "terminal event, StreamDone or StreamFailure (code STREAMING_ERROR, the underlying code in "
    "`details.cause`), then `data: [DONE]`. `: ping` comment lines keep the connection alive."
)


def _headers(op: Operation, status: int) -> dict[str, Any]:
    names = ["x-request-id"]
    if op.scope is not None:
        names += ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Chatspark-Mode"]
    if op.widget:
        names.append("Access-Control-Allow-Origin")
        if op.method != "options":
            names += ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
    if status in (409, 429, 503):
        names.append("Retry-After")
    if op.idempotent and status < 300:
        names.append("Idempotent-Replayed")
    if op.body is ChatCompletionRequest and status < 300:
        names.append("Chatspark-Conversation-Id")
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _stream_event(refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    """One server-sent event, as OpenAPI describes events ({data, event, id}): JSON data, or the final [DONE]."""
    payload = {"anyOf": [refs[StreamDelta], refs[StreamDone], refs[StreamFailure]]}
    return {
        "description": _STREAM_DESCRIPTION,
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
        "if": {"properties": {"data": {"const": "[DONE]"}}},
        "else": {
            "properties": {
                "data": {"contentMediaType": "application/json", "contentSchema": payload},
            },
        },
    }


def _chunk_event(refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    """One event of an OpenAI-compatible stream: a chunk, an in-stream error, or the final [DONE]."""
    return {
        "description": "`data: <json>` events: ChatCompletionChunk (the first with `delta.role`, the last "
                       "with `finish_reason`, then one with `usage` and no choices when "
                       "`stream_options.include_usage`), or OpenAIError if the turn failed after the "
                       "stream started; then `data: [DONE]`. `: ping` comment lines keep the connection alive.",
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
        "if": {"properties": {"data": {"const": "[DONE]"}}},
        "else": {"properties": {"data": {"contentMediaType": "application/json", "contentSchema": {
            "anyOf": [refs[ChatCompletionChunk], refs[OpenAIError]]}}}},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(op: Operation, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary, "headers": _headers(op, op.status)}
    if op.answer is dict:
        success["content"] = _json({"type": "object"})
    elif op.answer is not None:
        success["content"] = _json(refs[op.answer])
    if op.body in (ChatRequest, WidgetChatRequest):
        success["content"]["text/event-stream"] = {"schema": _stream_event(refs)}
    if op.body is ChatCompletionRequest:
        success["content"]["text/event-stream"] = {"schema": _chunk_event(refs)}
    if op.links:
        success["links"] = {
            link.name: {"operationId": _operation_id(link.method, link.path), "parameters": dict(link.parameters)}
            for link in op.links
        }
    responses = {str(op.status): success}
    for status, when in op.also:
        responses[str(status)] = {**success, "description": when, "headers": _headers(op, status)}
    if op.answer is Health:
        responses["503"] = {"description": "Degraded: `failed` names the unreachable dependency.",
                            "headers": _headers(op, 503), "content": _json(refs[Health])}
    by_status: dict[int, list[str]] = {}
    for cls in (*op.failures, *(_AUTHENTICATED if op.scope else ())):
        codes = by_status.setdefault(cls.status, [])
        if cls.code not in codes:
            codes.append(cls.code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": " or ".join(codes),
            "headers": _headers(op, status),
            "content": _json(refs[OpenAIError if op.openai else ErrorEnvelope]),
        }
    return responses


def _operation_id(method: str, path: str) -> str:
    return (
        f"{method}_{path.removeprefix('/api/v1/').strip('/')}".replace("/", "_")
        .replace("{", "").replace("}", "").replace(".", "_")
    )


def _operation(op: Operation, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, **spec}
        for name, spec in _PATH_PARAMETERS.items()
        if f"{{{name}}}" in op.path
    ]
    if op.paged:
        parameters += _PAGE_PARAMETERS
    parameters += op.query
    if op.idempotent:
        parameters.append(_IDEMPOTENCY_KEY)
    if op.body is ChatCompletionRequest:
        parameters.append(_CONVERSATION)
    if op.widget:
        parameters += [_ORIGIN, _VISITOR_TOKEN] if op.visitor else [_ORIGIN]
    parameters.append(_REQUEST_ID)
    spec: dict[str, Any] = {
        "operationId": _operation_id(op.method, op.path),
        "summary": op.summary,
        "parameters": parameters,
        "responses": _responses(op, refs),
    }
    if op.scope is None:
        spec["security"] = []
        if op.widget:
            spec["description"] = "From a browser, without a key: the agent must be public and `Origin` allowed."
    elif op.path == "/v1/models":
        spec["description"] = "Needs the `agents:read` or the `chat` scope."
    else:
        spec["description"] = f"Needs the `{op.scope}` scope."
    if op.body is not None:
        schema = refs[op.body]
        if op.required:
            schema = {"allOf": [schema, {"required": list(op.required)}]}
        if op.one_of_required:
            present = [{"required": [name], "properties": {name: {"type": "string"}}} for name in op.one_of_required]
            schema = {"allOf": [schema, {"anyOf": present}]}
        spec["requestBody"] = {"required": True, "content": _json(schema)}
    return spec


def _chat_request_schema(components: dict[str, Any], max_message_chars: int) -> None:
    """What `ChatRequest`'s type cannot say: a message with a non-space character, within the limit."""
    for request in ("ChatRequest", "WidgetChatRequest"):
        components[request]["properties"]["message"].update(
            minLength=1, maxLength=max_message_chars, pattern=NON_SPACE_PATTERN
        )


def _agent_changes_schema(components: dict[str, Any], models: tuple[str, ...]) -> None:
    """What `AgentChanges`' type cannot say: `model` names a configured model (else 400 on `model`)."""
    if models:
        components["AgentChanges"]["properties"]["model"] = {"anyOf": [{"enum": list(models)}, {"type": "null"}]}


def _webhook_url_schema(components: dict[str, Any]) -> None:
    """What the webhook types cannot say: the URL is https (plain http is taken only from test keys of
    a deployment that allows private URLs, which is for tests)."""
    for name in ("NewWebhook", "WebhookChanges"):
        url = components[name]["properties"]["url"]
        url["pattern"] = url["pattern"].replace("^https?://", "^https://", 1)


def _openai_request_schema(components: dict[str, Any], max_message_chars: int) -> None:
    """What `ChatCompletionRequest`'s type cannot say: `model` names an agent by id (the name of one
    agent the key may use is accepted too, which a schema cannot know); roles the endpoint takes;
    text parts only; each refused parameter only at the values that change nothing. That the last
    message is the user's, with a non-space character, is said in words (JSON Schema cannot)."""
    request = components["ChatCompletionRequest"]
    request["properties"]["model"] = {
        "type": "string", "pattern": "^(agent:|ag_)[0-9]{1,18}$",
        "description": "The agent: `agent:<id>` (as GET /v1/models lists it) or `ag_<id>`; also the agent's "
                       "name when exactly one agent this key may use has it (else 400 naming `model`).",
    }
    request["properties"]["messages"]["description"] = (
        "The last message is the turn and must be the user's (at most "
        f"{max_message_chars} characters, not only spaces). System and developer messages are added after "
        "the agent's instructions; earlier user/assistant messages are context of a new conversation "
        "(not stored) and ignored when continuing one."
    )
    for name in REFUSED:
        request["properties"][name] = {
            "enum": harmless_values(name), "default": None,
            "description": "Not supported: refused (400 naming it) unless absent or a value that changes nothing.",
        }
    message = components["ChatMessage"]
    message["properties"]["role"] = {"enum": ["assistant", "developer", "system", "user"]}
    for name in ("tool_calls", "tool_call_id", "function_call", "audio"):
        message["properties"][name] = {"type": "null", "default": None, "description": "Not supported."}
    part = components["TextPart"]
    part["properties"]["type"] = {"const": "text"}
    part["required"] = ["type", "text"]


def _any_json(kind: type) -> dict[str, Any]:
    if kind is object:
        return {"description": "any JSON value"}  # (an empty schema would read as "no schema")
    raise NotImplementedError(kind)


@functools.lru_cache(maxsize=4)
def document(max_message_chars: int = 32_000, models: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole document. Built once per configuration it shows: the message limit and the names of
    the configured models (none given: any model name, as far as the document says)."""
    types = [
        ChatRequest, ChatResponse, StreamDelta, StreamDone, StreamFailure, Health, AgentsPage, AgentEnvelope,
        AgentChanges, ConversationsPage, ConversationEnvelope, MessagesPage, FeedbackRequest, FeedbackResponse,
        SourcesPage, SourceEnvelope, AddSource, LeadsPage, LeadEnvelope, NewLead, ErrorEnvelope, WidgetSessionRequest,
        WidgetSession, WidgetChatRequest, WebhooksPage, WebhookEnvelope, WebhookCreated, NewWebhook,
        WebhookChanges, DeliveriesPage, AgentAnalytics, ChatCompletionRequest, ChatCompletion, ChatCompletionChunk,
        ModelList, OpenAIError,
    ]
    schemas, components = msgspec.json.schema_components(types, schema_hook=_any_json, ref_template=REF)
    _chat_request_schema(components, max_message_chars)
    _agent_changes_schema(components, models)
    _webhook_url_schema(components)
    _openai_request_schema(components, max_message_chars)
    refs = dict(zip(types, schemas))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chatspark",
            "version": "1",
            "description": "AI agents behind one HTTP API: chat (JSON or server-sent events), agents, conversations.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "headers": _HEADERS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "cs_live_… or cs_test_…"},
            },
        },
        "security": [{"bearer": []}],
    }


@functools.lru_cache(maxsize=4)
def document_json(max_message_chars: int = 32_000, models: tuple[str, ...] = ()) -> bytes:
    return msgspec.json.encode(document(max_message_chars, models))
