"""Wire types of the HTTP API (msgspec Structs: decoding validates) and the body decoder."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from backends.base import TokenUsage
from chatspark.agents import AgentDetail, AgentSummary, WidgetAgent
from chatspark.errors import ErrorBody, ValidationFailed
from chatspark.store.conversations import Citation
from chatspark.wire import Request, Wire

T = TypeVar("T")

Temperature = Annotated[float, Meta(ge=0, le=2)]
# "Has a character that is not white space", spelled out: Python's `\S` and a JSON Schema
# (ECMAScript) `\S` disagree (U+001C..U+001F, U+0085 are space to Python only, U+FEFF to
# ECMAScript only), so a fuzzer built on the document sent "\x1d" and met a 400. Every space of
# either counts as space here, in the schema and in the server's check alike.
NON_SPACE_PATTERN = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
NON_SPACE = re.compile(NON_SPACE_PATTERN)


class ChatRequest(Request):
    message: str
    conversation_id: str | None = None
    stream: bool = False
    temperature: Temperature | None = None


class WidgetChatRequest(Request):
    """A widget turn: the native request without `temperature` (a visitor does not tune the agent)."""

    message: str
    conversation_id: str | None = None
    stream: bool = False

    def native(self) -> ChatRequest:
        return ChatRequest(message=self.message, conversation_id=self.conversation_id, stream=self.stream)


class WidgetSessionRequest(Request):
    """`visitorToken`: the one a previous session gave (keeps the visitor). `userId` + `hash`: the
    host page vouches for its signed-in user (hex HMAC-SHA256 of the user id with the agent's
    identity secret)."""

    visitor_token: Annotated[str, Meta(max_length=1024)] | None = None
    user_id: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    hash: Annotated[str, Meta(max_length=128)] | None = None


class WidgetSession(Wire):
    visitor_token: str  # send as `Chatspark-Visitor` on every other widget call
    visitor_id: str
    identified: bool  # a verified user
    agent: WidgetAgent


class ContextReport(Wire):
    """What of the conversation the model saw: turns sent, turns left out by the budget, their tokens."""

    turns_included: int
    turns_dropped: int
    history_tokens: int


class ChatResponse(Wire):
    text: str
    conversation_id: str
    model: str
    message_id: str
    reply: str
    usage: TokenUsage
    expires_at: str
    context: ContextReport
    sources: list[Citation] = []  # the knowledge passages sent with the turn, best first


class StreamDelta(Wire):
    delta: str
    conversation_id: str


class StreamDone(Wire):
    delta: str
    conversation_id: str
    done: bool
    message_id: str
    model: str
    usage: TokenUsage
    expires_at: str
    context: ContextReport
    sources: list[Citation] = []  # the knowledge passages sent with the turn, best first


class StreamFailure(Wire):
    delta: str
    conversation_id: str
    error: ErrorBody


class Health(Wire):
    status: str
    version: str
    timestamp: str
    store: str
    failed: list[str] = []


Rating = Literal["positive", "negative"]


class AgentsPage(Wire):
    agents: list[AgentSummary]
    next_cursor: str | None


class AgentEnvelope(Wire):
    agent: AgentDetail


class ConversationRow(Wire):
    id: str
    message_count: int
    last_message_at: str
    created_at: str
    expires_at: str


class ConversationsPage(Wire):
    conversations: list[ConversationRow]
    next_cursor: str | None


class Exchange(Wire):
    query: str
    response: str
    created_at: str
    message_id: str
    model: str
    rating: Rating | None
    sources: list[Citation] = []


class ConversationDetail(Wire):
    id: str
    created_at: str
    expires_at: str
    messages: list[Exchange]


class ConversationEnvelope(Wire):
    conversation: ConversationDetail


class MessageRow(Wire):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: str
    model: str | None
    rating: Rating | None
    sources: list[Citation] = []  # on assistant rows: the passages the answer was grounded on


class MessagesPage(Wire):
    messages: list[MessageRow]
    next_cursor: str | None


class FeedbackRequest(Request):
    rating: Rating | None


class FeedbackResponse(Wire):
    message_id: str
    rating: Rating | None


SourceSlug = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


# An http(s) URL: a host name of up to five labels or a dotted IPv4 address, an optional port, a
# path. The service refuses loopback, private and metadata addresses unless configured otherwise,
# and the fetch checks every address it connects to.
_LABEL = r"[A-Za-z0-9]{1,15}(?:-[A-Za-z0-9]{1,15}){0,2}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
_URL = rf"^https?://(?:(?:{_LABEL}\.){{1,4}}[A-Za-z]{{2,12}}|{_OCTET}(?:\.{_OCTET}){{3}}){_PORT}(?:/[!-~]*)?$"
SourceUrl = Annotated[str, Meta(max_length=2048, pattern=_URL)]


class TextSource(Request, tag="text", tag_field="type"):
    """A text source: `data` is the text to learn (Markdown headings help chunking)."""

    source: SourceSlug
    data: Annotated[str, Meta(min_length=1, max_length=2_000_000, pattern=NON_SPACE_PATTERN)]


class PageSource(Request, tag="page", tag_field="type"):
    """One web page (HTML, Markdown, plain text or PDF)."""

    source: SourceSlug
    url: SourceUrl


class WebsiteSource(Request, tag="website", tag_field="type"):
    """A website crawled from `url`: same host, robots.txt honoured, bounded pages and depth."""

    source: SourceSlug
    url: SourceUrl


# POST /agents/{id}/training: `type` says which.
AddSource = TextSource | PageSource | WebsiteSource


class TrainingSource(Wire):
    id: int
    source: str
    type: Literal["text", "page", "website"]
    training_url: str | None
    title: str | None
    status: Literal["pending", "processing", "completed", "failed"]
    data_count: int | None
    error: str | None
    created_at: str
    updated_at: str


class SourceEnvelope(Wire):
    source: TrainingSource


class SourcesPage(Wire):
    sources: list[TrainingSource]
    next_cursor: str | None


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
        raise ValidationFailed.field(field, _without_regex(_with_choices(problem, kind, field), field)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ValidationFailed.field("body", "must be a JSON object encoded as UTF-8") from None


def decode_query(params: Mapping[str, str], kind: type[T]) -> T:
    """Validates a query string with a msgspec type, as bodies are (strings converted to its fields'
    types), naming the bad parameter under `details.fields`."""
    try:
        return msgspec.convert(dict(params), type=kind, strict=False)
    except msgspec.ValidationError as exc:
        field, problem = _describe(str(exc))
        raise ValidationFailed.field(field, problem.replace("known field", "known parameter")) from None


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


def _without_regex(problem: str, field: str) -> str:
    """msgspec names the pattern a string failed; a client is told what the field takes instead."""
    if not problem.startswith("Expected `str` matching regex"):
        return problem
    if field.lower().endswith(("url", "avatar")) or ".url" in field.lower():
        return "must be an http:// or https:// URL with a host name (or a public IPv4 address)"
    if "origins" in field.lower():
        return "must be an origin: http(s)://host[:port], lower case, no path"
    return "does not have the form this field takes (see the API documentation)"


def _with_choices(problem: str, kind: type, field: str) -> str:
    """"Invalid enum value 'good'" names what the field takes: "… (one of: 'positive', 'negative')"."""
    if not problem.startswith("Invalid enum value"):
        return problem
    choices = _literal_values(msgspec.inspect.type_info(kind), field.split("."))
    if not choices:
        return problem
    return f"{problem} (one of: {', '.join(repr(c) for c in choices)})"


def _literal_values(info: msgspec.inspect.Type, path: list[str]) -> list[object]:
    """The Literal values at `path` (encoded field names, `[n]` indexes) inside a type, if any."""
    for node in _alternatives(info):
        if not path:
            if isinstance(node, msgspec.inspect.LiteralType):
                return list(node.values)
            continue
        head, _, index = path[0].partition("[")
        if isinstance(node, msgspec.inspect.StructType):
            for f in node.fields:
                if f.encode_name == head:
                    inner = f.type
                    if index and isinstance(inner, msgspec.inspect.ListType):
                        inner = inner.item_type
                    found = _literal_values(inner, path[1:])
                    if found:
                        return found
    return []


def _alternatives(info: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    return list(info.types) if isinstance(info, msgspec.inspect.UnionType) else [info]
