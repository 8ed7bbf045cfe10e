"""Wire types of the OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`) and the
translation of native turns into them: one turn implementation (chatspark/turn.py), two shapes.

Names and shapes follow OpenAI's Chat Completions API (snake_case), not the native camelCase.
A parameter this service cannot honour is refused by name (400), never dropped silently; the few
that are accepted without effect are listed in `IGNORED`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from backends.base import Message, TokenUsage
from chatspark import errors
from chatspark.errors import ErrorBody
from chatspark.schemas import ChatResponse

Temperature = Annotated[float, Meta(ge=0, le=2)]
MaxTokens = Annotated[int, Meta(ge=1, le=2**31 - 1)]
# What a stored or configured agent is called on this endpoint: `agent:<id>`.
MODEL_PREFIX = "agent:"


class _OpenAIRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A body in OpenAI's field names (snake_case); an unknown field is refused by name."""


class TextPart(msgspec.Struct, kw_only=True):
    """A content part; only `text` parts are taken (another type is refused by name, not as an unknown field)."""

    type: str
    text: str | UnsetType = UNSET


class ChatMessage(_OpenAIRequest):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None  # accepted; not sent on (our backends take role and content)
    refusal: str | None = None
    tool_calls: Any = None  # refused when set (see `unsupported`)
    tool_call_id: Any = None
    function_call: Any = None
    audio: Any = None


class StreamOptions(_OpenAIRequest):
    include_usage: bool = False
    include_obfuscation: bool = False  # accepted; chunks are never padded here


class ChatCompletionRequest(_OpenAIRequest):
    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
    metadata: dict[str, Annotated[str, Meta(max_length=512)]] | None = None
    n: int | None = None
    # Accepted without effect (IGNORED): hints to OpenAI's own platform.
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    # Refused unless absent or a value that changes nothing (see `unsupported`).
    top_p: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None
    stop: Any = None
    seed: Any = None
    logit_bias: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    @property
    def output_cap(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


IGNORED = ("store", "parallel_tool_calls", "prompt_cache_key", "safety_identifier", "service_tier", "user",
           "stream_options.include_obfuscation", "messages[].name")
# Parameters refused unless they hold one of these values (each changes nothing at that value).
_HARMLESS: dict[str, tuple[object, ...]] = {
    "n": (None, 1),
    "top_p": (None, 1, 1.0),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "stop": (None, [], ""),
    "seed": (None,),
    "logit_bias": (None, {}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "web_search_options": (None,),
}
SUPPORTED = ("model", "messages", "stream", "stream_options.include_usage", "temperature", "max_tokens",
             "max_completion_tokens", "metadata.conversation_id", "n (1 only)")
REFUSED = tuple(_HARMLESS)


def _same_json(a: object, b: object) -> bool:
    """Equal as JSON values: 1 and 1.0 are one number; `false` is not `0`, nor `[]` `{}`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def harmless_values(name: str) -> list[object]:
    """The values of a refused parameter that are accepted (each changes nothing), each once."""
    values: list[object] = []
    for value in _HARMLESS[name]:
        if not any(_same_json(value, seen) for seen in values):
            values.append(value)
    return values


def unsupported(request: ChatCompletionRequest) -> None:
    """Raises a 400 naming the first parameter this service cannot honour."""
    for name, harmless in _HARMLESS.items():
        value = getattr(request, name)
        if value is not None and not any(_same_json(value, ok) for ok in harmless):
            raise errors.ValidationFailed.field(name, "is not supported by this endpoint")
    for i, message in enumerate(request.messages):
        if message.role in ("tool", "function"):
            raise errors.ValidationFailed.field(f"messages[{i}].role", f"{message.role!r} messages are not supported")
        for name in ("tool_calls", "tool_call_id", "function_call", "audio"):
            if getattr(message, name) is not None:
                raise errors.ValidationFailed.field(f"messages[{i}].{name}", "is not supported by this endpoint")


def text_of(message: ChatMessage, index: int) -> str:
    """A message's text: its string content, or its text parts joined; other parts are refused."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is UNSET:
            raise errors.ValidationFailed.field(f"messages[{index}].content", f"part type {part.type!r} is not supported")
        texts.append(part.text)
    return "".join(texts)


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """A request's messages split as a turn takes them: the new user message, the client's system
    text, and its earlier user/assistant messages (context for a new conversation)."""

    message: str
    system: str
    earlier: tuple[Message, ...]


def split_messages(messages: list[ChatMessage]) -> Conversation:
    """The last message must be the user's: it is the turn. Every system/developer message is the
    client's system text (in order); tool and function messages are refused."""
    systems: list[str] = []
    earlier: list[Message] = []
    for i, message in enumerate(messages):
        if message.role in ("tool", "function"):
            raise errors.ValidationFailed.field(f"messages[{i}].role", f"{message.role!r} messages are not supported")
        text = text_of(message, i)
        if message.role in ("system", "developer"):
            if text:
                systems.append(text)
        elif i < len(messages) - 1:
            earlier.append(Message(message.role, text))
    last = messages[-1]
    if last.role != "user":
        raise errors.ValidationFailed.field("messages", "the last message must be the user's (role 'user')")
    return Conversation(message=text_of(last, len(messages) - 1), system="\n\n".join(systems),
                        earlier=tuple(earlier))


# --- answers ---------------------------------------------------------------------------------


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        return cls(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                   total_tokens=usage.prompt_tokens + usage.completion_tokens)


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int  # unix seconds
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: None = None


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    # With `stream_options.include_usage`: null on every chunk but the last, which has no choices.
    usage: Usage | None | UnsetType = UNSET


class ModelEntry(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatspark"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


class OpenAIErrorBody(msgspec.Struct, kw_only=True):
    message: str
    type: str
    code: str  # the contract's code (API_KEY_INVALID, …)
    param: str | None = None


class OpenAIError(msgspec.Struct, kw_only=True):
    """Every error of this endpoint, as OpenAI's SDKs read it."""

    error: OpenAIErrorBody


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
          403: "permission_error", 404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error(body: ErrorBody, status: int) -> OpenAIError:
    """The native error body in OpenAI's shape; `param` names the bad field (OpenAI's name)."""
    param = None
    if body.details is not UNSET and body.details.fields is not UNSET and body.details.fields:
        param = next(iter(body.details.fields))
        param = "messages" if param == "message" else param
    return OpenAIError(error=OpenAIErrorBody(message=body.message, type=error_type(status), code=body.code,
                                             param=param))


def completion_id(message_id: str) -> str:
    return "chatcmpl-" + message_id.removeprefix("msg_")


def completion(answer: ChatResponse, model: str, created: int) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id(answer.message_id), created=created, model=model,
        choices=[Choice(message=AssistantMessage(content=answer.text))], usage=Usage.of(answer.usage),
    )


class NativeEvent(msgspec.Struct, kw_only=True, rename="camel"):
    """Any event of a native chat stream (StreamDelta, StreamDone or StreamFailure), decoded leniently."""

    delta: str = ""
    conversation_id: str = ""
    done: bool = False
    usage: TokenUsage | None = None
    error: ErrorBody | None = None


native_event = msgspec.json.Decoder(NativeEvent)
