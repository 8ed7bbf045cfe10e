"""The one interface every model backend implements, and the values and errors it speaks in.

Backends know neither HTTP nor the store: they turn a `ModelCall` into text, whole or in pieces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

import msgspec


class Message(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class FaqEntry(msgspec.Struct, frozen=True):
    question: str
    answer: str


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One configured model, as `config.toml` names it under `[models.<name>]`."""

    name: str
    backend: str = "litellm"
    # What the provider calls the model (for litellm: "openai/gpt-4o-mini").
    provider_model: str = ""
    timeout_seconds: float = 60.0
    # Extra attempts after the first one, for retryable upstream failures only.
    retries: int = 1
    context_window: int = 128_000
    max_output_tokens: int = 4_096
    # Other configured model names, tried in order when this one fails retryably.
    fallbacks: tuple[str, ...] = ()
    # Optional override of the provider endpoint; else OPENAI_BASE_URL / OPENAI_API_BASE.
    api_base: str | None = None
    # Name of the environment variable holding the key; else OPENAI_API_KEY.
    api_key_env: str | None = None
    # litellm backend only: who sends a request litellm resolved to OpenAI's chat API (any
    # OpenAI-compatible server). "direct": litellm maps the parameters, backends.openai sends and
    # relays (~10x less CPU); "litellm": litellm's own HTTP path. Other providers always use litellm's.
    relay: Literal["direct", "litellm"] = "direct"


class Excerpt(msgspec.Struct, frozen=True):
    """A passage of the agent's knowledge sent with a turn (already in `messages` for real models)."""

    text: str
    title: str | None
    score: float  # 0..1, best first


class ModelCall(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelSettings
    messages: tuple[Message, ...]
    temperature: float
    # For knowledge-only backends (`local`): the agent's FAQ and its fallback answer.
    faq: tuple[FaqEntry, ...] = ()
    no_answer: str = ""
    # For knowledge-only backends: the retrieved passages, best first.
    excerpts: tuple[Excerpt, ...] = ()
    # A caller's cap on the answer's tokens (the OpenAI-compatible `max_tokens`); None: the model's.
    max_tokens: int | None = None

    def output_tokens(self, model: ModelSettings) -> int:
        """The answer's token budget on `model` (the called one or a fallback): the caller's cap,
        never above the model's own output budget."""
        if self.max_tokens is None:
            return model.max_output_tokens
        return min(self.max_tokens, model.max_output_tokens)


class TokenUsage(msgspec.Struct, frozen=True, rename="camel"):
    """Tokens of one call; also what the API reports (`usage: {promptTokens, completionTokens}`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class Completion(msgspec.Struct, frozen=True):
    text: str
    usage: TokenUsage


class Delta(msgspec.Struct, frozen=True):
    """A piece of a streamed answer. The last item of a stream may carry usage and empty text."""

    text: str
    usage: TokenUsage | None = None


class Backend(Protocol):
    async def complete(self, call: ModelCall) -> Completion: ...

    def stream(self, call: ModelCall) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...


class BackendError(Exception):
    """A model call failed. `retryable`: the same call may succeed later (or on a fallback model)."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ProviderError(BackendError):
    """The provider answered with an error (429, 5xx, 4xx) or the connection failed or dropped."""


class ProviderTimeout(BackendError):
    """The provider did not answer within the model's timeout."""


class ContextTooLong(BackendError):
    """The provider refused the prompt as longer than the model's context window."""

    retryable = False
