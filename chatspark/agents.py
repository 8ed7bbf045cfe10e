"""Agents: the stored record, what the API shows of it, and the changes a client may send."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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

# The widget (public access from browsers). An origin as a browser sends it in `Origin`: scheme,
# lower-case host name or IPv4 address (no IPv6 literal), optional port (1–65535, no leading
# zero); no path, no trailing slash. A default
# port (`:443` on https, `:80` on http), which browsers leave out, is dropped when stored.
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
Origin = Annotated[str, Meta(
    pattern=rf"^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:{_PORT})?$", max_length=300,
    description="An exact origin, `scheme://host[:port]` (http or https, lower-case host, no path).",
)]
# An http(s) URL: a host name or IPv4 address (no brackets: an IPv6 literal or a stray `[` is refused,
# as any URL parser would refuse it), an optional port, then printable ASCII. `OptionalUrl` may be "".
_HTTP_URL = r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?"
HttpUrl = Annotated[str, Meta(pattern=f"^{_HTTP_URL}$", max_length=2_000)]
OptionalUrl = Annotated[str, Meta(pattern=f"^(?:{_HTTP_URL})?$", max_length=2_000)]
Label = Annotated[str, Meta(min_length=1, max_length=200)]
ActionId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
FieldKey = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
IdentitySecret = Annotated[str, Meta(min_length=16, max_length=256)]
SuggestedMessage = Annotated[str, Meta(min_length=1, max_length=200)]
WidgetCap = Annotated[int, Meta(ge=0)]


class ActionField(Wire, forbid_unknown_fields=True):
    """One input of a form action. A form whose keys include lead fields submits a lead."""

    key: FieldKey
    label: Label
    required: bool = False
    type: Literal["text", "email", "tel", "url", "number", "textarea"] = "text"


class ButtonAction(Wire, forbid_unknown_fields=True, tag="button", tag_field="type"):
    id: ActionId
    label: Label
    url: HttpUrl | None = None
    primary: bool = False


class LinkAction(Wire, forbid_unknown_fields=True, tag="link", tag_field="type"):
    id: ActionId
    label: Label
    url: HttpUrl
    primary: bool = False


class FormAction(Wire, forbid_unknown_fields=True, tag="form", tag_field="type"):
    id: ActionId
    label: Label
    fields: Annotated[list[ActionField], Meta(min_length=1, max_length=20)]
    primary: bool = False


# `type` tells them apart: a link needs `url`, only a form has `fields`.
Action = ButtonAction | LinkAction | FormAction
Origins = Annotated[list[Origin], Meta(max_length=50)]
SuggestedMessages = Annotated[list[SuggestedMessage], Meta(max_length=10)]
Actions = Annotated[list[Action], Meta(max_length=10)]


class Agent(Wire, forbid_unknown_fields=True):
    """An agent as stored (and as `config.toml` seeds it). Field names follow the public API."""

    id: PositiveInt
    name: Name
    bot_name: str | None = None
    bot_personality: Text = "You are a helpful assistant."
    bot_no_answer: Text = "Sorry, I don't know the answer to that."
    welcome_message: Text = ""
    website_url: Short = ""  # (checked as URLs when set through the API: AgentChanges)
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
    # The widget: public from these origins (none: not public), identity verification, its texts
    # and actions, and its own monthly cap of completed turns (0: unlimited).
    allowed_origins: Origins = []
    identity_secret: IdentitySecret | None = None  # write-only: the API shows `identityVerification`
    require_identity: bool = False
    suggested_messages: SuggestedMessages = []
    actions: Actions = []
    widget_monthly_cap: WidgetCap = 0
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

    @property
    def public(self) -> bool:
        """Reachable from browsers (the widget endpoints)."""
        return bool(self.allowed_origins)


class AgentChanges(Request):
    """The body of POST (where `name` is required) and PATCH (only the fields sent change)."""

    name: Name | UnsetType = UNSET
    bot_name: str | None | UnsetType = UNSET
    bot_personality: Text | UnsetType = UNSET
    bot_no_answer: Text | UnsetType = UNSET
    welcome_message: Text | UnsetType = UNSET
    website_url: OptionalUrl | UnsetType = UNSET
    bot_avatar: OptionalUrl | UnsetType = UNSET
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
    allowed_origins: Origins | UnsetType = UNSET
    identity_secret: IdentitySecret | None | UnsetType = UNSET
    require_identity: bool | UnsetType = UNSET
    suggested_messages: SuggestedMessages | UnsetType = UNSET
    actions: Actions | UnsetType = UNSET
    widget_monthly_cap: WidgetCap | UnsetType = UNSET

    def sent(self) -> dict[str, Any]:
        """The fields the client sent, by attribute name."""
        return {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not UNSET}


def apply(agent: Agent, changes: AgentChanges, now: int) -> Agent:
    sent = changes.sent()
    if "allowed_origins" in sent:
        # As browsers send them (no default port), each once, in the order given.
        sent["allowed_origins"] = list(dict.fromkeys(_without_default_port(o) for o in sent["allowed_origins"]))
    return msgspec.structs.replace(agent, **sent, updated_at=now)


def _without_default_port(origin: str) -> str:
    default = ":443" if origin.startswith("https:") else ":80"
    return origin.removesuffix(default)


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
    allowed_origins: list[str]
    identity_verification: bool  # an identity secret is set (the secret itself is never shown)
    require_identity: bool
    suggested_messages: list[str]
    actions: list[Action]
    widget_monthly_cap: int


class WidgetAgent(Wire):
    """What a browser may know of a public agent: how the widget looks and what it offers. Never
    its instructions, model, FAQ, origins or secret."""

    id: int
    bot_name: str
    bot_avatar: str
    primary_color: str
    welcome_message: str
    suggested_messages: list[str]
    actions: list[Action]
    require_identity: bool
    remove_branding: bool


def widget_view(agent: Agent) -> WidgetAgent:
    return WidgetAgent(
        id=agent.id,
        bot_name=agent.display_name,
        bot_avatar=agent.bot_avatar,
        primary_color=agent.primary_color,
        welcome_message=agent.welcome_message,
        suggested_messages=agent.suggested_messages,
        actions=agent.actions,
        require_identity=agent.require_identity,
        remove_branding=agent.remove_branding,
    )


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
        allowed_origins=agent.allowed_origins,
        identity_verification=agent.identity_secret is not None,
        require_identity=agent.require_identity,
        suggested_messages=agent.suggested_messages,
        actions=agent.actions,
        widget_monthly_cap=agent.widget_monthly_cap,
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
