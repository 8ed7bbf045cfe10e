"""The contract every HTTP model backend keeps (see `backends.base`), run against each of them: the
litellm backend as shipped (litellm resolves the request, `backends.openai` relays it: `relay =
"direct"`), the litellm backend on litellm's own HTTP path (`relay = "litellm"`, the path every
non-OpenAI provider takes) and the direct OpenAI-compatible one (aiohttp + msgspec), all against the
fake OpenAI server on 127.0.0.1.

Where a backend legitimately differs, the test says so with a per-backend expectation. What only one
backend has (litellm's offline mode, the openai backend's byte-level framing, sessions and pooling)
is in tests/test_backend_litellm.py and tests/test_backend_openai.py, which reuse the helpers here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from backends import load_backend
from backends.base import (
    Backend,
    Completion,
    ContextTooLong,
    Delta,
    Message,
    ModelCall,
    ModelSettings,
    ProviderError,
    ProviderTimeout,
    TokenUsage,
)
from tests.fake_openai import (
    Behaviour,
    FakeOpenAI,
    drop_mid_stream,
    error,
    fake_openai,  # noqa: F401  (fixture)
    not_sse,
    refused_base_url,
    reply,
    silent_stream,
    slow,
)

BACKENDS = ("litellm", "litellm-http", "openai")  # litellm-http: the litellm backend, relay = "litellm"
KEY_ENV = "CHATSPARK_TEST_BACKEND_KEY"
KEY = "sk-fake-test-key-0123456789"
ROOT = Path(__file__).resolve().parents[1]
ANSWER = "You said: hello there. I saw 2 messages."  # the fake's echo of `ask()`
FAKE_USAGE = TokenUsage(prompt_tokens=4, completion_tokens=8)  # the fake counts words


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Which backend a test runs against; the backend-specific test modules override it with one name."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


class LitellmHttp:
    """The litellm backend with every model set to `relay = "litellm"`: litellm's own HTTP path."""

    def __init__(self) -> None:
        self._backend = load_backend("litellm")

    async def complete(self, call: ModelCall) -> Completion:
        return await self._backend.complete(self._own_http(call))

    def stream(self, call: ModelCall) -> AsyncIterator[Delta]:
        return self._backend.stream(self._own_http(call))

    async def warmup(self, settings: ModelSettings) -> None:
        await self._backend.warmup(msgspec.structs.replace(settings, relay="litellm"))  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self._backend.aclose()

    @staticmethod
    def _own_http(call: ModelCall) -> ModelCall:
        return msgspec.structs.replace(call, model=msgspec.structs.replace(call.model, relay="litellm"))


def make_backend(backend_name: str) -> Backend:
    return LitellmHttp() if backend_name == "litellm-http" else load_backend(backend_name)


@pytest.fixture
async def backend(backend_name: str, backend_env: None) -> AsyncIterator[Backend]:
    made = make_backend(backend_name)
    yield made
    await made.aclose()


def model(api_base: str | None, **settings: object) -> ModelSettings:
    values: dict[str, object] = {
        "provider_model": "openai/gpt-4o-mini", "retries": 0, "timeout_seconds": 5.0, "api_key_env": KEY_ENV, **settings
    }
    return ModelSettings(name="test-model", api_base=api_base, **values)  # type: ignore[arg-type]


def ask(settings: ModelSettings, text: str = "hello there") -> ModelCall:
    return ModelCall(model=settings, messages=(Message("system", "be brief"), Message("user", text)), temperature=0.3)


async def collect(backend: Backend, call: ModelCall, into: list[Delta] | None = None) -> list[Delta]:
    deltas = into if into is not None else []
    stream = backend.stream(call)
    try:
        async for delta in stream:
            deltas.append(delta)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return deltas


async def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the fake never saw the connection close"
        await anyio.sleep(0.01)


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_complete_returns_the_providers_answer_and_usage(backend: Backend, fake_openai: FakeOpenAI) -> None:
    settings = model(fake_openai.base_url, max_output_tokens=321)
    completion = await backend.complete(ask(settings))
    assert completion.text == ANSWER
    assert completion.usage == FAKE_USAGE
    [sent] = fake_openai.requests
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 321
    assert "stream" not in sent
    assert fake_openai.headers[0]["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_a_callers_max_tokens_caps_the_answer_within_the_models_budget(backend: Backend,
                                                                             fake_openai: FakeOpenAI) -> None:
    settings = model(fake_openai.base_url, max_output_tokens=321)
    for cap, sent in ((50, 50), (10_000, 321)):
        call = msgspec.structs.replace(ask(settings), max_tokens=cap)
        await backend.complete(call)
        assert fake_openai.requests[-1]["max_tokens"] == sent
        await collect(backend, call)
        assert fake_openai.requests[-1]["max_tokens"] == sent


@pytest.mark.anyio
async def test_stream_deltas_join_to_the_answer_and_end_with_usage(backend: Backend, fake_openai: FakeOpenAI) -> None:
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert [d.text for d in deltas[:3]] == ["You ", "said: ", "hello "]  # word by word, as the fake sent it
    assert "".join(d.text for d in deltas) == ANSWER
    assert all(d.usage is None for d in deltas[:-1])
    assert deltas[-1] == Delta("", FAKE_USAGE)
    [sent] = fake_openai.requests
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
async def test_the_openai_provider_prefix_is_stripped_and_a_bare_name_is_sent_as_is(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    await backend.complete(ask(model(fake_openai.base_url, provider_model="openai/gpt-4o-mini")))
    await collect(backend, ask(model(fake_openai.base_url, provider_model="openai/gpt-4o-mini")))
    await backend.complete(ask(model(fake_openai.base_url, provider_model="gpt-4o-mini")))
    assert [r["model"] for r in fake_openai.requests] == ["gpt-4o-mini"] * 3


@pytest.mark.anyio
async def test_provider_endpoint_and_key_default_to_the_openai_variables(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-api-key")
    completion = await backend.complete(ask(model(None, api_key_env=None)))
    assert completion.text == ANSWER
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-from-openai-api-key"


@pytest.mark.anyio
async def test_openai_api_base_is_used_when_openai_base_url_is_unset(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", fake_openai.base_url + "/")  # a trailing slash is fine
    completion = await backend.complete(ask(model(None)))
    assert completion.text == ANSWER


@pytest.mark.anyio
async def test_the_proxy_in_the_environment_carries_the_calls(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment whose egress goes through a proxy names it in HTTP(S)_PROXY, as for any HTTP
    # client. The provider's name below does not resolve: only the proxy (the fake, which answers an
    # absolute-form request line like any other) can carry the call.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake_openai.port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{fake_openai.port}")
    upstream = model("http://provider.invalid/v1")
    assert (await backend.complete(ask(upstream))).text == ANSWER
    assert "".join(d.text for d in await collect(backend, ask(upstream))) == ANSWER
    assert len(fake_openai.requests) == 2
    # NO_PROXY names the hosts reached directly: here the proxy is dead, the provider is the fake.
    dead = refused_base_url().removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("http_proxy", dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert (await backend.complete(ask(model(fake_openai.base_url)))).text == ANSWER


@pytest.mark.anyio
async def test_the_key_comes_from_the_variable_the_model_names(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one")
    monkeypatch.setenv("CHATSPARK_TEST_OTHER_KEY", "sk-this-one")
    await collect(backend, ask(model(fake_openai.base_url, api_key_env="CHATSPARK_TEST_OTHER_KEY")))
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-this-one"


@pytest.mark.anyio
async def test_repetitive_output_is_streamed_whole(backend: Backend, fake_openai: FakeOpenAI) -> None:
    # litellm's repetition guard would abort after 100 identical chunks.
    fake_openai.enqueue(reply("ha " * 150, chunks=150))
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert "".join(d.text for d in deltas) == "ha " * 150


@pytest.mark.anyio
async def test_warmup_calls_nobody_and_never_raises(backend: Backend, fake_openai: FakeOpenAI) -> None:
    await backend.warmup(model(fake_openai.base_url))  # type: ignore[attr-defined]
    await backend.warmup(model(fake_openai.base_url, provider_model="no-such-provider/x"))  # type: ignore[attr-defined]
    assert fake_openai.requests == []
    assert (await backend.complete(ask(model(fake_openai.base_url)))).text == ANSWER


# --- retries and error mapping ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_rate_limit_is_retried_and_then_answers(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(429))
    completion = await backend.complete(ask(model(fake_openai.base_url, retries=1)))
    assert completion.text == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_rate_limit_past_the_retries_is_a_retryable_error(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(429), error(429))
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=1)))
    assert raised.value.retryable is True and "429" in str(raised.value)
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_server_error_without_retries_is_one_request_and_retryable(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(500))
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=0)))
    assert raised.value.retryable is True and "500" in str(raised.value)
    assert len(fake_openai.requests) == 1  # no HTTP client (litellm, the openai SDK, aiohttp) retried on its own


@pytest.mark.anyio
async def test_retries_stop_after_the_configured_count_with_the_backoff_between(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(503), error(503), error(503), error(503))
    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 3
    assert 0.55 <= time.monotonic() - started < 2.0  # 0.2 s + 0.4 s of backoff


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_final_and_not_retried(backend: Backend, fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.enqueue(error(status))
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is False
    assert str(status) in str(raised.value)
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_context_window_refusal_is_context_too_long(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(400, "This model's maximum context length is 128000 tokens. However, you requested 200000."))
    with pytest.raises(ContextTooLong):
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    fake_openai.enqueue(error(400, "This model's maximum context length is 128000 tokens."))
    with pytest.raises(ContextTooLong):
        await collect(backend, ask(model(fake_openai.base_url, retries=2)))
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_errors_carry_neither_user_text_nor_the_key(backend: Backend, fake_openai: FakeOpenAI) -> None:
    # Providers do quote request content and (masked) keys in their error messages.
    fake_openai.enqueue(error(400, f"Invalid content 'my secret question' for key {KEY}"))
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(model(fake_openai.base_url), "my secret question"))
    assert "secret" not in str(raised.value) and KEY not in str(raised.value)
    assert "test-model" in str(raised.value)


@pytest.mark.anyio
async def test_a_slow_provider_times_out_at_the_models_timeout(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(slow(3), slow(3))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await backend.complete(ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)))
    assert time.monotonic() - started < 1.5  # 0.5 s with slack; not retried (fallback models take over)
    assert len(fake_openai.requests) == 1
    await wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)  # the abandoned request is closed


@pytest.mark.anyio
async def test_a_refused_connection_is_retryable_and_says_so(backend: Backend) -> None:
    settings = model(refused_base_url(), retries=0)
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)
    with pytest.raises(ProviderError) as raised:
        await collect(backend, ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)


@pytest.mark.anyio
async def test_a_refused_connection_is_retried(backend: Backend) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderError):
        await backend.complete(ask(model(refused_base_url(), retries=1)))
    assert time.monotonic() - started >= 0.2  # one backoff pause: there was a second attempt


@pytest.mark.anyio
async def test_a_missing_key_fails_without_calling_out(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    settings = model(fake_openai.base_url, retries=2)
    with pytest.raises(ProviderError) as raised:
        await backend.complete(ask(settings))
    assert raised.value.retryable is False and KEY_ENV in str(raised.value)
    with pytest.raises(ProviderError) as raised:
        await collect(backend, ask(settings))
    assert raised.value.retryable is False and KEY_ENV in str(raised.value)
    assert fake_openai.requests == []


# --- streams that go wrong -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stream_is_retried_before_its_first_delta(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(503))
    deltas = await collect(backend, ask(model(fake_openai.base_url, retries=1)))
    assert "".join(d.text for d in deltas) == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_stream_dropped_before_its_first_delta_is_retried(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=0))
    deltas = await collect(backend, ask(model(fake_openai.base_url, retries=1)))
    assert "".join(d.text for d in deltas) == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_drop_mid_stream_ends_in_an_error_after_the_sent_deltas(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    deltas: list[Delta] = []
    with pytest.raises(ProviderError) as raised:
        await collect(backend, ask(model(fake_openai.base_url, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["You ", "said: "]
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 1  # text went out: no retry


@pytest.mark.anyio
@pytest.mark.parametrize(
    "silence",
    [slow(3), silent_stream(3)],
    ids=["no-response-head-for-3s", "the-head-then-3s-of-nothing"],
)
async def test_a_stream_silent_past_the_timeout_times_out(
    backend: Backend, fake_openai: FakeOpenAI, silence: Behaviour
) -> None:
    fake_openai.enqueue(silence)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5)))
    assert time.monotonic() - started < 1.5


@pytest.mark.anyio
async def test_the_timeout_bounds_each_wait_not_the_whole_stream(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(reply("tick " * 8, chunks=8, gap=0.15))  # 1.2 s in all, never 0.5 s silent
    deltas = await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5)))
    assert "".join(d.text for d in deltas) == "tick " * 8


@pytest.mark.anyio
async def test_a_stream_stalling_after_its_first_delta_times_out(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(reply("one two", chunks=2, gap=3))
    deltas: list[Delta] = []
    with pytest.raises(ProviderTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["one "]
    assert len(fake_openai.requests) == 1


# What each backend can tell about a 200 whose body is not an event stream: the openai backend (and the
# litellm backend's direct relay through it) sees the content type; litellm's own HTTP path turns such a
# body into an empty stream, so "no answer at all" is its only tell.
NOT_SSE_MESSAGE = {
    "litellm": "without an event stream", "litellm-http": "carried no answer", "openai": "without an event stream"
}


@pytest.mark.anyio
async def test_a_200_that_is_not_an_event_stream_is_an_error(
    backend: Backend, backend_name: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(not_sse())
    with pytest.raises(ProviderError) as raised:
        await collect(backend, ask(model(fake_openai.base_url)))
    assert NOT_SSE_MESSAGE[backend_name] in str(raised.value) and "html" not in str(raised.value).lower()
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_closing_a_stream_early_closes_the_provider_connection(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("word " * 40, chunks=40, gap=0.1))  # a 4 s stream
    stream = backend.stream(ask(model(fake_openai.base_url)))
    first = await stream.__anext__()
    assert first.text == "word "
    closed_at = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_for(lambda: bool(fake_openai.closed_streams), seconds=3.0)
    assert fake_openai.closed_streams[0] - closed_at < 1.0


@pytest.mark.anyio
async def test_cancelling_a_stream_consumer_closes_the_provider_connection(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("word " * 40, chunks=40, gap=0.1))
    received: list[Delta] = []
    with anyio.move_on_after(0.35):
        async with contextlib.aclosing(backend.stream(ask(model(fake_openai.base_url)))) as stream:  # type: ignore[type-var]
            async for delta in stream:
                received.append(delta)
    cancelled_at = time.monotonic()
    assert 1 <= len(received) < 40
    await wait_for(lambda: bool(fake_openai.closed_streams), seconds=3.0)
    assert fake_openai.closed_streams[0] - cancelled_at < 1.0


# --- no network but the provider -------------------------------------------------------------------

_AUDIT_SCRIPT = """
import asyncio, importlib, json, os, sys
events = []
def hook(event, args):
    if event == "socket.connect":
        events.append(["connect", repr(args[1])])
    elif event == "socket.getaddrinfo":
        events.append(["getaddrinfo", repr(args[0])])
sys.addaudithook(hook)
name, relay, base_url = sys.argv[1:4]
module = importlib.import_module("backends." + name)
from backends.base import Message, ModelCall, ModelSettings
after_import = list(events)
settings = ModelSettings(name="m", backend=name, provider_model="openai/gpt-4o-mini", api_base=base_url,
                         api_key_env="AUDIT_KEY", relay=relay)
call = ModelCall(model=settings, messages=(Message("user", "hi"),), temperature=0.0)
async def main():
    backend = module.create()
    await backend.warmup(settings)
    await backend.complete(call)
    [d async for d in backend.stream(call)]
    await backend.aclose()
asyncio.run(main())
print(json.dumps({"after_import": after_import, "all": events, "offline": os.environ.get("LITELLM_OFFLINE_MODE"),
                  "litellm_imported": "litellm" in sys.modules}))
"""

# The openai backend must import and run without a single warning; litellm's own imports are not ours to fix.
_AUDIT_PYTHON_FLAGS = {"litellm": [], "litellm-http": [], "openai": ["-W", "error"]}
_AUDIT_RUNS = {"litellm": ("litellm", "direct"), "litellm-http": ("litellm", "litellm"), "openai": ("openai", "direct")}


@functools.cache
def audit(backend_name: str) -> dict[str, Any]:
    """One warm-up, complete and stream in a fresh interpreter with no LITELLM_/OPENAI_/HF_ variables, every
    DNS look-up and connect recorded. Run once per backend per test session; the specific modules read it too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "HF_"))}
    with FakeOpenAI() as fake:
        result = subprocess.run(
            [sys.executable, *_AUDIT_PYTHON_FLAGS[backend_name], "-c", _AUDIT_SCRIPT, *_AUDIT_RUNS[backend_name],
             fake.base_url],
            cwd=ROOT, env={**env, "AUDIT_KEY": "sk-audit"}, capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return {**seen, "port": fake.port, "requests": len(fake.requests)}


def test_only_the_configured_provider_is_contacted(backend_name: str) -> None:
    seen = audit(backend_name)
    assert seen["after_import"] == []  # importing fetches nothing (for litellm: no cost map, no tokenizer)
    assert {tuple(e) for e in seen["all"]} <= {
        ("getaddrinfo", "'127.0.0.1'"),
        ("connect", f"('127.0.0.1', {seen['port']})"),
    }
    assert seen["requests"] == 2  # complete + stream; warm-up stayed local
