"""Wire types of the HTTP API (msgspec Structs: decoding validates) and the body decoder."""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from chatspark.agents import AgentDetail, AgentSummary
from chatspark.errors import ValidationFailed

T = TypeVar("T")

Temperature = Annotated[float, Meta(ge=0, le=2)]


class ChatRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    message: str
    conversation_id: str | None = None
    stream: bool = False
    temperature: Temperature | None = None


class Usage(msgspec.Struct, rename="camel"):
    prompt_tokens: int
    completion_tokens: int


class ContextReport(msgspec.Struct, rename="camel"):
    """What of the conversation the model saw: turns sent, turns left out by the budget, their tokens."""

    turns_included: int
    turns_dropped: int
    history_tokens: int


class ChatResponse(msgspec.Struct, kw_only=True, rename="camel"):
    text: str
    conversation_id: str
    model: str
    message_id: str
    reply: str
    usage: Usage
    expires_at: str
    context: ContextReport


class StreamDelta(msgspec.Struct, kw_only=True, rename="camel"):
    delta: str
    conversation_id: str


class StreamDone(msgspec.Struct, kw_only=True, rename="camel"):
    delta: str
    conversation_id: str
    done: bool
    message_id: str
    model: str
    usage: Usage
    expires_at: str
    context: ContextReport


class StreamFailure(msgspec.Struct, kw_only=True, rename="camel"):
    delta: str
    conversation_id: str
    error: dict[str, object]


class Health(msgspec.Struct, kw_only=True):
    status: str
    version: str
    timestamp: str
    store: str
    failed: list[str] = []


Rating = Literal["positive", "negative"]


class AgentsPage(msgspec.Struct, kw_only=True, rename="camel"):
    agents: list[AgentSummary]
    next_cursor: str | None


class AgentEnvelope(msgspec.Struct, kw_only=True):
    agent: AgentDetail


class ConversationRow(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    message_count: int
    last_message_at: str
    created_at: str
    expires_at: str


class ConversationsPage(msgspec.Struct, kw_only=True, rename="camel"):
    conversations: list[ConversationRow]
    next_cursor: str | None


class Exchange(msgspec.Struct, kw_only=True, rename="camel"):
    query: str
    response: str
    created_at: str
    message_id: str
    model: str
    rating: Rating | None


class ConversationDetail(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    created_at: str
    expires_at: str
    messages: list[Exchange]


class ConversationEnvelope(msgspec.Struct, kw_only=True):
    conversation: ConversationDetail


class MessageRow(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: str
    model: str | None
    rating: Rating | None


class MessagesPage(msgspec.Struct, kw_only=True, rename="camel"):
    messages: list[MessageRow]
    next_cursor: str | None


class FeedbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rating: Rating | None


class FeedbackResponse(msgspec.Struct, kw_only=True, rename="camel"):
    message_id: str
    rating: Rating | None


_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD_PROBLEM = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<field>[^`]+)`$")


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decodes and validates a JSON body, naming each bad field under `details.fields`."""
    try:
        try:
            return msgspec.json.decode(body, type=kind)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # JSON (and JSON Schema's `integer`) has one number 5, however it is written; msgspec
            # refuses `5.0` for an int. Rare, so only then: whole numbers become ints, checked again.
            return msgspec.convert(_whole_numbers_as_ints(msgspec.json.decode(body)), type=kind)
    except msgspec.ValidationError as exc:
        field, problem = _describe(str(exc))
        raise ValidationFailed.field(field, problem) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ValidationFailed.field("body", "must be a JSON object encoded as UTF-8") from None


def _whole_numbers_as_ints(value: object) -> object:
    # Beyond 2**53 a float no longer names one integer: left as it is, it is refused as before.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers_as_ints(item) for item in value]
    return value


def _describe(error: str) -> tuple[str, str]:
    """('conversationId', 'Expected `str`, got `int`') from msgspec's one-line error text."""
    path = ""
    located = _LOCATION.search(error)
    if located:
        path = located["path"].lstrip(".")
        error = error[: located.start()]
    named = _FIELD_PROBLEM.match(error)
    if named:
        field = f"{path}.{named['field']}" if path else named["field"]
        return field, "is required" if named["what"] == "missing required" else "is not a known field"
    return path or "body", error
