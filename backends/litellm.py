"""Backend for any provider litellm knows: litellm resolves the provider and its request; our own retries.

Who sends the request (`ModelSettings.relay`): for a model litellm resolves to OpenAI's chat-completions
API (`openai/…`, or a bare OpenAI name, on api.openai.com or any OpenAI-compatible `api_base`), by
default we do — litellm maps the parameters, `backends.openai` sends the body and relays the stream
(in the backend: ~4 µs CPU per chunk and ~0.25 ms per call instead of ~520 µs and ~8 ms: the openai
SDK and litellm each rebuild every chunk as pydantic objects, litellm prices every answer and
reassembles every stream; bench/profiles/litellm.md). Every
other provider (`anthropic/…`, `bedrock/…`, `groq/…`, models litellm sends to the Responses API), and
every model with `relay = "litellm"`, goes through `litellm.acompletion` and litellm's HTTP path.

Import it only when a configured model uses it: importing litellm costs ~3 s and ~190 MB.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from backends.litellm_setup import exception_chain, litellm  # offline and quiet: set up once, there
from litellm.responses.bridge_check import responses_api_bridge_check
from litellm.types.utils import LlmProviders
from litellm.utils import ProviderConfigManager, get_optional_params
from litellm.exceptions import (
    APIConnectionError,
    ContextWindowExceededError,
    MidStreamFallbackError,
    Timeout,
)

from backends.base import (
    BackendError,
    Completion,
    ContextTooLong,
    Delta,
    ModelCall,
    ModelSettings,
    ProviderError,
    ProviderTimeout,
    TokenUsage,
)
from backends.openai import OpenAIBackend, ProviderRequest, api_base, api_key, configured_base, provider_request
from backends.retry import complete_with_retries, stream_with_retries


log = logging.getLogger("chatspark.backends.litellm")


class LitellmBackend:
    def __init__(self) -> None:
        self._direct = OpenAIBackend()  # sends what litellm resolved to OpenAI's API (see the docstring)

    async def complete(self, call: ModelCall) -> Completion:
        if takes_direct_path(call.model):
            return await self._direct.send(call, _mapped_direct_request(call, stream=False))
        kwargs = _request(call)

        async def attempt() -> Completion:
            try:
                response = await litellm.acompletion(**kwargs)
            except Exception as exc:
                raise _map_error(exc, call.model) from exc
            text = response.choices[0].message.content or ""
            return Completion(text, _usage(getattr(response, "usage", None), call, text))

        return await complete_with_retries(call.model, attempt)

    def stream(self, call: ModelCall) -> AsyncGenerator[Delta, None]:
        if takes_direct_path(call.model):
            return self._direct.relay(call, functools.partial(_mapped_direct_request, call, stream=True))
        return stream_with_retries(call.model, lambda: _stream_once(_stream_request(call), call))

    async def warmup(self, model: ModelSettings) -> None:
        """Make the direct path's session, or run litellm's call paths once offline (`mock_response`):
        the first real stream then skips ~430 ms of lazy imports and setup."""
        if takes_direct_path(model):
            await self._direct.warmup(model)
            return
        name = model.provider_model if "/" in model.provider_model else f"openai/{model.provider_model or 'warmup'}"
        messages = [{"role": "user", "content": "warm up"}]
        try:
            await litellm.acompletion(model=name, messages=messages, mock_response="ok", max_retries=0)
            response = await litellm.acompletion(
                model=name, messages=messages, mock_response="ok warm", stream=True,
                stream_options={"include_usage": True}, max_retries=0,
            )
            try:
                async for _ in response:
                    pass
            finally:
                await response.aclose()
        except Exception as exc:  # a failed warm-up only costs latency later; never stop the start
            log.warning("litellm warm-up for model %s failed: %s", model.name, type(exc).__name__)

    async def aclose(self) -> None:
        # litellm owns its HTTP clients in a process-wide cache, one per event loop, and closes them at
        # exit; closing them here would break other event loops (other servers) in this process.
        await self._direct.aclose()


def create() -> LitellmBackend:
    return LitellmBackend()


def takes_direct_path(model: ModelSettings) -> bool:
    """Whether we send this model's requests ourselves (see the module docstring)."""
    return model.relay == "direct" and _openai_chat_model(model.provider_model, configured_base(model)) is not None


@functools.lru_cache(maxsize=256)
def _openai_chat_model(provider_model: str, base: str | None) -> str | None:
    """OpenAI's name for `provider_model` when litellm resolves it (at `base`) to OpenAI's
    chat-completions API; None for any other provider or API."""
    try:
        name, provider, _, _ = litellm.get_llm_provider(model=provider_model, api_base=base)
        if provider != "openai" or responses_api_bridge_check(name, provider, api_base=base)[0].get("mode") == "responses":
            return None
        if _chat_config(name).should_fake_stream(model=name, stream=True, custom_llm_provider=provider):
            return None  # litellm asks for a whole answer and streams it itself
    except Exception:  # litellm cannot tell the provider: its own path says why, per call
        return None
    return name


def _direct_request(call: ModelCall, *, stream: bool) -> ProviderRequest:
    """The body litellm's OpenAI handler would send for `call`: litellm's parameter mapping
    (`max_completion_tokens` for reasoning models, say) and its message rules (no system role for
    some models), both cached per model and parameters; then sent by us."""
    model = call.model
    key = api_key(model)  # first: a missing key fails without asking litellm anything
    name = _openai_chat_model(model.provider_model, configured_base(model))
    assert name is not None, "only for models that take the direct path"
    params = _openai_params(name, call.temperature, call.output_tokens(model))
    if _sends_plain_messages_as_they_are(name, params):  # most models: skip the ~60 µs transformation
        body: dict[str, Any] = {"model": name, "messages": call.messages, **dict(params)}
    else:
        body = _chat_config(name).transform_request(
            model=name, messages=_plain(call), optional_params=dict(params), litellm_params={}, headers={}
        )
    if stream:  # as litellm's OpenAI handler adds them to a streamed call
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    organization = litellm.organization or os.environ.get("OPENAI_ORGANIZATION")
    headers = {"OpenAI-Organization": organization} if organization else {}
    return provider_request(body, api_base=api_base(model), api_key=key, stream=stream, headers=headers)


def _mapped_direct_request(call: ModelCall, *, stream: bool) -> ProviderRequest:
    try:
        return _direct_request(call, stream=stream)
    except BackendError:
        raise
    except Exception as exc:  # litellm refused the parameters (UnsupportedParamsError, a 400)
        raise _map_error(exc, call.model) from exc


@functools.lru_cache(maxsize=1024)
def _openai_params(name: str, temperature: float, max_tokens: int) -> tuple[tuple[str, Any], ...]:
    """litellm's mapping of our parameters for OpenAI model `name` (~0.3 ms; the same every time)."""
    params = get_optional_params(
        model=name, custom_llm_provider="openai", temperature=temperature, max_tokens=max_tokens
    )
    params.pop("stream", None)  # litellm's OpenAI handler takes these out and adds them back itself
    params.pop("stream_options", None)
    params.update(params.pop("extra_body", None) or {})  # what the OpenAI SDK would merge into the body
    return tuple(params.items())


@functools.lru_cache(maxsize=1024)
def _sends_plain_messages_as_they_are(name: str, params: tuple[tuple[str, Any], ...]) -> bool:
    """Whether litellm's transformation for `name` leaves a body of plain-text messages (each role)
    and these parameters as it is: then the body is ours to build (o-series models, for one, turn
    the system message into a user message, so they take the transformation every time)."""
    probe = [{"role": role, "content": f"probe {role}"} for role in ("system", "user", "assistant", "user")]
    expected = {"model": name, "messages": [dict(m) for m in probe], **dict(params)}
    try:
        body = _chat_config(name).transform_request(
            model=name, messages=probe, optional_params=dict(params), litellm_params={}, headers={}
        )
    except Exception:  # let the real call say what is wrong
        return False
    return body == expected


def _plain(call: ModelCall) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content} for m in call.messages]


@functools.lru_cache(maxsize=256)
def _chat_config(name: str) -> Any:
    """litellm's request transformation for OpenAI model `name` (o-series, gpt-5, audio… differ)."""
    return ProviderConfigManager.get_provider_chat_config(model=name, provider=LlmProviders.OPENAI)


def _request(call: ModelCall) -> dict[str, Any]:
    """litellm.acompletion arguments; raises (without calling out) when no key is configured."""
    key = api_key(call.model)
    return {
        "model": call.model.provider_model,
        "messages": _plain(call),
        "temperature": call.temperature,
        "max_tokens": call.output_tokens(call.model),
        "timeout": call.model.timeout_seconds,
        "max_retries": 0,  # the SDK would retry twice on its own; we retry in our loop
        "api_key": key,
        "api_base": configured_base(call.model),
    }


def _stream_request(call: ModelCall) -> dict[str, Any]:
    return {**_request(call), "stream": True, "stream_options": {"include_usage": True}}


def _usage(usage: Any, call: ModelCall, text: str) -> TokenUsage:
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if prompt is None or completion is None:  # the provider reported none: estimate, ~4 bytes a token
        prompt = sum(math.ceil(len(m.content.encode()) / 4) for m in call.messages)
        completion = math.ceil(len(text.encode()) / 4)
    return TokenUsage(int(prompt), int(completion))


async def _stream_once(kwargs: dict[str, Any], call: ModelCall) -> AsyncGenerator[Delta, None]:
    """One attempt of a stream; failures raised as our errors."""
    started = False
    response: Any = None
    try:
        response = await litellm.acompletion(**kwargs)
        parts: list[str] = []
        usage: TokenUsage | None = None
        async for chunk in response:
            if getattr(chunk, "usage", None) is not None:
                usage = _usage(chunk.usage, call, "")
            for choice in chunk.choices or ():
                text = getattr(choice.delta, "content", None)
                if text:
                    parts.append(text)
                    started = True
                    yield Delta(text)
        if not parts and usage is None:
            # litellm turns a 200 whose body is not SSE into an empty "successful" stream
            # (and invents finish_reason="stop"), so nothing-at-all is the only tell.
            raise _EmptyStream
        yield Delta("", usage if usage is not None else _usage(None, call, "".join(parts)))
    except Exception as exc:
        raise _map_error(exc, call.model, mid_stream=started) from exc
    finally:
        # Also runs when the consumer stops early (aclose/cancel): closes the HTTP response
        # so the provider stops generating. litellm's aclose shields itself from cancellation.
        if response is not None and hasattr(response, "aclose"):
            await response.aclose()


class _EmptyStream(Exception):
    """A stream that ended without a single content delta or usage report."""


def _map_error(exc: Exception, model: ModelSettings, *, mid_stream: bool = False) -> BackendError:
    """A litellm/openai/httpx failure as our error. Messages name the model and the kind of failure
    only: provider error texts can quote the prompt or a masked key."""
    name = model.name
    if isinstance(exc, _EmptyStream):
        return ProviderError(f"model {name}: the provider's stream carried no answer (not an event stream?)")
    chain = exception_chain(exc)
    if any(isinstance(e, Timeout | httpx.TimeoutException) for e in chain):
        return ProviderTimeout(f"model {name}: the provider did not answer within {model.timeout_seconds:g} s")
    if isinstance(exc, ContextWindowExceededError):
        return ContextTooLong(f"model {name}: the prompt is longer than the provider's context window")
    if any(isinstance(e, ConnectionRefusedError | socket.gaierror | httpx.ConnectError) for e in chain):
        return ProviderError(f"model {name}: could not reach the provider (connection failed)")
    if mid_stream or isinstance(exc, MidStreamFallbackError):
        return ProviderError(f"model {name}: the provider's stream broke off")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, APIConnectionError) or not isinstance(status, int):
        return ProviderError(f"model {name}: provider request failed ({type(exc).__name__})")
    retryable = status in (408, 409, 429) or status >= 500  # what the OpenAI SDK itself would retry
    return ProviderError(f"model {name}: the provider answered HTTP {status} ({type(exc).__name__})", retryable=retryable)
