"""What the API answers, as dataclasses with snake_case fields. Each keeps the decoded JSON it was
built from in `raw` (fields a newer server adds are there before this package names them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Json = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_json(cls, data: Json | None) -> Usage:
        data = data or {}
        return cls(prompt_tokens=int(data.get("promptTokens", 0)), completion_tokens=int(data.get("completionTokens", 0)))


@dataclass(frozen=True)
class Source:
    """A knowledge passage sent to the model with a turn."""

    training_id: int
    source: str
    title: str | None
    url: str | None
    score: float

    @classmethod
    def from_json(cls, data: Json) -> Source:
        return cls(training_id=data["trainingId"], source=data["source"], title=data.get("title"),
                   url=data.get("url"), score=float(data.get("score", 0.0)))


def _sources(data: Json) -> list[Source]:
    return [Source.from_json(s) for s in data.get("sources") or []]


@dataclass(frozen=True)
class ChatResponse:
    """One answered turn (`chat.send`)."""

    text: str
    reply: str
    conversation_id: str
    message_id: str
    model: str
    usage: Usage
    expires_at: str | None
    sources: list[Source]
    raw: Json = field(repr=False, compare=False)
    replayed: bool = False  # the answer of an earlier request with the same Idempotency-Key

    @classmethod
    def from_json(cls, data: Json, replayed: bool = False) -> ChatResponse:
        return cls(text=data["text"], reply=data.get("reply", data["text"]), conversation_id=data["conversationId"],
                   message_id=data["messageId"], model=data["model"], usage=Usage.from_json(data.get("usage")),
                   expires_at=data.get("expiresAt"), sources=_sources(data), raw=data, replayed=replayed)


@dataclass(frozen=True)
class ChatDelta:
    """A piece of the answer, as it streams (`chat.send_streaming`)."""

    delta: str
    conversation_id: str
    event_id: int | None
    raw: Json = field(repr=False, compare=False)
    done: Literal[False] = False


@dataclass(frozen=True)
class ChatDone:
    """The stream's last event: the turn is stored."""

    delta: str
    conversation_id: str
    message_id: str
    model: str
    usage: Usage
    expires_at: str | None
    sources: list[Source]
    event_id: int | None
    raw: Json = field(repr=False, compare=False)
    done: Literal[True] = True


ChatEvent = ChatDelta | ChatDone


def chat_event(data: Json, event_id: int | None) -> ChatEvent:
    if data.get("done"):
        return ChatDone(delta=data.get("delta", ""), conversation_id=data["conversationId"],
                        message_id=data["messageId"], model=data["model"], usage=Usage.from_json(data.get("usage")),
                        expires_at=data.get("expiresAt"), sources=_sources(data), event_id=event_id, raw=data)
    return ChatDelta(delta=data.get("delta", ""), conversation_id=data["conversationId"], event_id=event_id, raw=data)


@dataclass(frozen=True)
class Agent:
    """An agent. The list has the summary fields; get/create/update fill the rest (else None)."""

    id: int
    name: str
    bot_name: str
    bot_avatar: str
    website_url: str
    status: str
    chatbot_type: str
    gpt4: bool
    created_at: str
    updated_at: str
    raw: Json = field(repr=False, compare=False)
    bot_personality: str | None = None
    bot_no_answer: str | None = None
    welcome_message: str | None = None
    model: str | None = None
    temperature: float | None = None

    @classmethod
    def from_json(cls, data: Json) -> Agent:
        return cls(id=data["id"], name=data["name"], bot_name=data.get("botName", ""),
                   bot_avatar=data.get("botAvatar", ""), website_url=data.get("websiteUrl", ""),
                   status=data.get("status", ""), chatbot_type=data.get("chatbotType", ""),
                   gpt4=bool(data.get("gpt4", False)), created_at=data.get("createdAt", ""),
                   updated_at=data.get("updatedAt", ""), raw=data, bot_personality=data.get("botPersonality"),
                   bot_no_answer=data.get("botNoAnswer"), welcome_message=data.get("welcomeMessage"),
                   model=data.get("model"), temperature=data.get("temperature"))


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    message_count: int
    last_message_at: str
    created_at: str
    expires_at: str
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> ConversationSummary:
        return cls(id=data["id"], message_count=data["messageCount"], last_message_at=data["lastMessageAt"],
                   created_at=data["createdAt"], expires_at=data["expiresAt"], raw=data)


@dataclass(frozen=True)
class Exchange:
    """One stored turn of a conversation: the user's query and the answer."""

    query: str
    response: str
    created_at: str
    message_id: str
    model: str
    rating: str | None
    sources: list[Source]

    @classmethod
    def from_json(cls, data: Json) -> Exchange:
        return cls(query=data["query"], response=data["response"], created_at=data["createdAt"],
                   message_id=data["messageId"], model=data["model"], rating=data.get("rating"), sources=_sources(data))


@dataclass(frozen=True)
class Conversation:
    id: str
    created_at: str
    expires_at: str
    messages: list[Exchange]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Conversation:
        return cls(id=data["id"], created_at=data["createdAt"], expires_at=data["expiresAt"],
                   messages=[Exchange.from_json(m) for m in data.get("messages", [])], raw=data)


@dataclass(frozen=True)
class Message:
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: str
    model: str | None
    rating: str | None
    sources: list[Source]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Message:
        return cls(id=data["id"], role=data["role"], content=data["content"], created_at=data["createdAt"],
                   model=data.get("model"), rating=data.get("rating"), sources=_sources(data), raw=data)


@dataclass(frozen=True)
class Feedback:
    message_id: str
    rating: str | None

    @classmethod
    def from_json(cls, data: Json) -> Feedback:
        return cls(message_id=data["messageId"], rating=data.get("rating"))


@dataclass(frozen=True)
class Lead:
    id: str
    agent_id: int
    name: str | None
    email: str | None
    phone: str | None
    company_name: str | None
    message: str | None
    conversation_id: str | None
    created_at: str
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Lead:
        return cls(id=data["id"], agent_id=data["agentId"], name=data.get("name"), email=data.get("email"),
                   phone=data.get("phone"), company_name=data.get("companyName"), message=data.get("message"),
                   conversation_id=data.get("conversationId"), created_at=data["createdAt"], raw=data)


@dataclass(frozen=True)
class AnalyticsDay:
    date: str
    messages: int
    conversations: int
    leads: int


@dataclass(frozen=True)
class Analytics:
    total_messages: int
    total_conversations: int
    total_leads: int
    start: str
    end: str
    daily: list[AnalyticsDay]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Analytics:
        period = data.get("period") or {}
        daily = [AnalyticsDay(date=d["date"], messages=d.get("messages", 0), conversations=d.get("conversations", 0),
                              leads=d.get("leads", 0)) for d in data.get("daily") or []]
        return cls(total_messages=data["totalMessages"], total_conversations=data["totalConversations"],
                   total_leads=data["totalLeads"], start=period.get("start", ""), end=period.get("end", ""),
                   daily=daily, raw=data)


@dataclass(frozen=True)
class TrainingSource:
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
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> TrainingSource:
        return cls(id=data["id"], source=data["source"], type=data["type"], training_url=data.get("trainingUrl"),
                   title=data.get("title"), status=data["status"], data_count=data.get("dataCount"),
                   error=data.get("error"), created_at=data["createdAt"], updated_at=data["updatedAt"], raw=data)


@dataclass(frozen=True)
class Webhook:
    id: int
    name: str
    url: str
    events: list[str]
    agent_ids: list[int]
    is_active: bool
    created_at: str
    updated_at: str
    raw: Json = field(repr=False, compare=False)
    secret: str | None = None  # only on the answer to create: sign-check deliveries with it

    @classmethod
    def from_json(cls, data: Json, secret: str | None = None) -> Webhook:
        return cls(id=data["id"], name=data["name"], url=data["url"], events=list(data.get("events", [])),
                   agent_ids=list(data.get("agentIds", [])), is_active=bool(data.get("isActive", True)),
                   created_at=data["createdAt"], updated_at=data["updatedAt"], raw=data, secret=secret)
