"""Agents: the stored record, what the API shows of it, and the changes a client may send."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from backends.base import FaqEntry
from chatspark.clock import iso
from chatspark.wire import Request, Wire

PositiveInt = Annotated[int, Meta(ge=1)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Text = Annotated[str, Meta(max_length=20_000)]
Short = Annotated[str, Meta(max_length=2_000)]
# Up to ten years: a conversation's expiry must stay a valid 4-digit-year time.
TtlSeconds = Annotated[int, Meta(ge=1, le=10 * 365 * 24 * 3600)]


class Agent(Wire, forbid_unknown_fields=True):
    """An agent as stored (and as `config.toml` seeds it). Field names follow the public API."""

    id: PositiveInt
    name: Name
    bot_name: str | None = None
    bot_personality: Text = "You are a helpful assistant."
    bot_no_answer: Text = "Sorry, I don't know the answer to that."
    welcome_message: Text = ""
    website_url: Short = ""
    bot_avatar: Short = ""
    status: Short = "listed"
    chatbot_type: Short = "chatbot"
    primary_color: Short = ""
    remove_branding: bool = False
    ga_id: Short = msgspec.field(default="", name="gaID")
    gpt4: bool = False
    # A configured model name; when absent, `gpt4` decides (gpt-4o or gpt-4o-mini).
    model: str | None = None
    temperature: Temperature | None = None
    faq: list[FaqEntry] = []
    conversation_ttl_seconds: TtlSeconds = 7 * 24 * 3600
    # The prompt window: at most this many recent turns, and at most this many history tokens.
    history_turns: Annotated[int, Meta(ge=0, le=1000)] = 20
    history_tokens: PositiveInt | None = None
    created_at: int = 0  # ms since the epoch
    updated_at: int = 0

    @property
    def model_name(self) -> str:
        if self.model:
            return self.model
        return "gpt-4o" if self.gpt4 else "gpt-4o-mini"

    @property
    def display_name(self) -> str:
        return self.bot_name or self.name


class AgentChanges(Request):
    """The body of POST (where `name` is required) and PATCH (only the fields sent change)."""

    name: Name | UnsetType = UNSET
    bot_name: str | None | UnsetType = UNSET
    bot_personality: Text | UnsetType = UNSET
    bot_no_answer: Text | UnsetType = UNSET
    welcome_message: Text | UnsetType = UNSET
    website_url: Short | UnsetType = UNSET
    bot_avatar: Short | UnsetType = UNSET
    status: Short | UnsetType = UNSET
    chatbot_type: Short | UnsetType = UNSET
    primary_color: Short | UnsetType = UNSET
    remove_branding: bool | UnsetType = UNSET
    ga_id: Short | UnsetType = msgspec.field(default=UNSET, name="gaID")
    gpt4: bool | UnsetType = UNSET
    model: str | None | UnsetType = UNSET
    temperature: Temperature | None | UnsetType = UNSET
    faq: list[FaqEntry] | UnsetType = UNSET
    conversation_ttl_seconds: TtlSeconds | UnsetType = UNSET
    history_turns: Annotated[int, Meta(ge=0, le=1000)] | UnsetType = UNSET
    history_tokens: PositiveInt | None | UnsetType = UNSET

    def sent(self) -> dict[str, Any]:
        """The fields the client sent, by attribute name."""
        return {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not UNSET}


def apply(agent: Agent, changes: AgentChanges, now: int) -> Agent:
    return msgspec.structs.replace(agent, **changes.sent(), updated_at=now)


class AgentSummary(Wire):
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


class AgentDetail(AgentSummary):
    bot_personality: str
    bot_no_answer: str
    welcome_message: str
    primary_color: str
    remove_branding: bool
    ga_id: str = msgspec.field(name="gaID")
    model: str
    temperature: float | None
    faq: list[FaqEntry]
    conversation_ttl_seconds: int
    history_turns: int
    history_tokens: int | None


def summary(agent: Agent) -> AgentSummary:
    return AgentSummary(**_summary_fields(agent))


def detail(agent: Agent) -> AgentDetail:
    return AgentDetail(
        **_summary_fields(agent),
        bot_personality=agent.bot_personality,
        bot_no_answer=agent.bot_no_answer,
        welcome_message=agent.welcome_message,
        primary_color=agent.primary_color,
        remove_branding=agent.remove_branding,
        ga_id=agent.ga_id,
        model=agent.model_name,
        temperature=agent.temperature,
        faq=agent.faq,
        conversation_ttl_seconds=agent.conversation_ttl_seconds,
        history_turns=agent.history_turns,
        history_tokens=agent.history_tokens,
    )


def _summary_fields(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "bot_name": agent.display_name,
        "bot_avatar": agent.bot_avatar,
        "website_url": agent.website_url,
        "status": agent.status,
        "chatbot_type": agent.chatbot_type,
        "gpt4": agent.gpt4,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }
