"""What only the litellm backend has: litellm's offline mode, and which requests it sends itself. The
behaviours every backend shares (answers, streams, retries, error mapping, timeouts, closing, warm-up,
network use) are in tests/test_backend_contract.py, run against this backend on both of its paths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from backends import load_backend
from backends.base import Backend, Message, ModelCall, ModelSettings, ProviderError
from backends.litellm import takes_direct_path
from tests.fake_openai import FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from tests.test_backend_contract import (
    audit,
    backend_env,  # noqa: F401  (fixture)
    collect,
    model,
)

AIOHTTP = "aiohttp"  # in the user agent of backends.openai's requests: the direct relay
OPENAI_SDK = "AsyncOpenAI/Python"  # litellm's own HTTP path for OpenAI (through the openai SDK)
LITELLM_HTTP = "litellm/"  # litellm's own HTTP client, for the providers it speaks itself


@pytest.fixture
async def backend(backend_env: None) -> AsyncIterator[Backend]:  # noqa: F811
    made = load_backend("litellm")
    yield made
    await made.aclose()


def test_litellm_runs_offline() -> None:
    seen = audit("litellm")  # a fresh interpreter, without any LITELLM_ variable
    assert seen["offline"] == "true"  # set by backends.litellm before litellm is imported
    assert seen["after_import"] == []  # so: no cost-map fetch, no tokenizer download at import


@pytest.mark.parametrize(
    ("provider_model", "relay", "direct"),
    [
        ("openai/gpt-4o-mini", "direct", True),
        ("gpt-4o", "direct", True),  # litellm knows the bare name as OpenAI's
        ("openai/my-vllm-model", "direct", True),  # any model on an OpenAI-compatible server
        ("openai/gpt-4o-mini", "litellm", False),  # switched off
        ("openai/o1-pro", "direct", False),  # litellm sends it to OpenAI's Responses API
        ("anthropic/claude-3-5-sonnet-latest", "direct", False),
        ("groq/llama-3.1-8b-instant", "direct", False),
        ("hosted_vllm/my-model", "direct", False),
        ("no-such-model", "direct", False),  # litellm cannot tell the provider: its path says so
    ],
)
def test_only_models_litellm_resolves_to_openais_chat_api_take_the_direct_path(
    provider_model: str, relay: str, direct: bool
) -> None:
    settings = ModelSettings(name="m", provider_model=provider_model, api_base="http://127.0.0.1:9/v1", relay=relay)  # type: ignore[arg-type]
    assert takes_direct_path(settings) is direct


@pytest.mark.anyio
@pytest.mark.parametrize("provider_model", ["openai/gpt-4o-mini", "openai/o3-mini"])
async def test_the_direct_path_sends_the_body_litellms_own_path_sends(
    backend: Backend, fake_openai: FakeOpenAI, provider_model: str
) -> None:
    # o3-mini: litellm maps max_tokens to max_completion_tokens; the direct path must say the same.
    direct = model(fake_openai.base_url, provider_model=provider_model, max_output_tokens=99)
    call = ModelCall(model=direct, messages=(Message("system", "be brief"), Message("user", "hi")), temperature=1.0)
    own_http = msgspec.structs.replace(call, model=msgspec.structs.replace(direct, relay="litellm"))
    for each in (call, own_http):
        assert (await backend.complete(each)).text.startswith("You said: hi")
        await collect(backend, each)
    direct_plain, direct_stream, litellm_plain, litellm_stream = fake_openai.requests
    assert direct_plain == litellm_plain and direct_stream == litellm_stream
    agents = [h["user-agent"] for h in fake_openai.headers]
    assert AIOHTTP in agents[0] and AIOHTTP in agents[1]  # so the two paths did differ
    assert agents[2].startswith(OPENAI_SDK) and agents[3].startswith(OPENAI_SDK)
    if provider_model.endswith("o3-mini"):
        assert direct_plain["max_completion_tokens"] == 99 and "max_tokens" not in direct_plain


@pytest.mark.anyio
async def test_another_provider_goes_through_litellms_own_http_path(backend: Backend, fake_openai: FakeOpenAI) -> None:
    settings = model(fake_openai.base_url, provider_model="hosted_vllm/my-model")
    call = ModelCall(model=settings, messages=(Message("user", "hello there"),), temperature=0.3)
    assert (await backend.complete(call)).text == "You said: hello there. I saw 1 messages."
    deltas = await collect(backend, call)
    assert "".join(d.text for d in deltas) == "You said: hello there. I saw 1 messages."
    assert [r["model"] for r in fake_openai.requests] == ["my-model", "my-model"]
    assert all(h["user-agent"].startswith(LITELLM_HTTP) for h in fake_openai.headers)


@pytest.mark.anyio
@pytest.mark.parametrize("relay", ["direct", "litellm"])
async def test_parameters_litellm_refuses_are_a_final_error_that_calls_nobody(
    backend: Backend, fake_openai: FakeOpenAI, relay: str
) -> None:
    # litellm refuses temperature 0.3 for OpenAI's o-series (only 1 is accepted), before any request.
    settings = model(fake_openai.base_url, provider_model="openai/o3-mini", relay=relay, retries=2)
    call = ModelCall(model=settings, messages=(Message("user", "hi"),), temperature=0.3)
    with pytest.raises(ProviderError) as raised:
        await backend.complete(call)
    assert raised.value.retryable is False and "400" in str(raised.value)
    with pytest.raises(ProviderError) as raised:
        await collect(backend, call)
    assert raised.value.retryable is False
    assert fake_openai.requests == []
