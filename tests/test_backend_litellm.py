"""The litellm backend through litellm's real HTTP path, against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import backends.litellm  # noqa: F401  (imported once here: it costs seconds)
from backends import load_backend
from backends.base import (
    Backend,
    ContextTooLong,
    Delta,
    Message,
    ModelCall,
    ModelSettings,
    UpstreamError,
    UpstreamTimeout,
    Usage,
)
from tests.fake_openai import (
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

KEY_ENV = "CHATSPARK_TEST_LITELLM_KEY"
KEY = "sk-fake-test-key-0123456789"
ROOT = Path(__file__).resolve().parents[1]
ANSWER = "You said: hello there. I saw 2 messages."  # the fake's echo of `ask()`
FAKE_USAGE = Usage(prompt_tokens=4, completion_tokens=8)  # the fake counts words


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return load_backend("litellm")


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


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_complete_returns_the_providers_answer_and_usage(backend: Backend, fake_openai: FakeOpenAI) -> None:
    settings = model(fake_openai.base_url, max_output_tokens=321)
    completion = await backend.complete(ask(settings))
    assert completion.text == ANSWER
    assert completion.usage == FAKE_USAGE
    [sent] = fake_openai.requests
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 321
    assert fake_openai.headers[0]["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_stream_deltas_join_to_the_answer_and_end_with_usage(backend: Backend, fake_openai: FakeOpenAI) -> None:
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert len(deltas) > 3  # word by word, as the fake sent it
    assert "".join(d.text for d in deltas) == ANSWER
    assert deltas[-1] == Delta("", FAKE_USAGE)
    [sent] = fake_openai.requests
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


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
async def test_repetitive_output_is_streamed_whole(backend: Backend, fake_openai: FakeOpenAI) -> None:
    # litellm's guard would abort after 100 identical chunks.
    fake_openai.enqueue(reply("ha " * 150, chunks=150))
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert "".join(d.text for d in deltas) == "ha " * 150


# --- retries and error mapping ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_rate_limit_is_retried_and_then_answers(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(429))
    completion = await backend.complete(ask(model(fake_openai.base_url, retries=1)))
    assert completion.text == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_server_error_without_retries_is_one_request_and_retryable(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(500))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=0)))
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 1  # neither litellm nor the openai SDK retried on its own


@pytest.mark.anyio
async def test_retries_stop_after_the_configured_count(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(503), error(503), error(503), error(503))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_final_and_not_retried(backend: Backend, fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.enqueue(error(status))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is False
    assert str(status) in str(raised.value)
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_context_window_refusal_is_context_too_long(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(400, "This model's maximum context length is 128000 tokens. However, you requested 200000."))
    with pytest.raises(ContextTooLong):
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_errors_carry_neither_user_text_nor_the_key(backend: Backend, fake_openai: FakeOpenAI) -> None:
    # Providers do quote request content and (masked) keys in their error messages.
    fake_openai.enqueue(error(400, f"Invalid content 'my secret question' for key {KEY}"))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url), "my secret question"))
    assert "secret" not in str(raised.value) and KEY not in str(raised.value)
    assert "test-model" in str(raised.value)


@pytest.mark.anyio
async def test_a_slow_provider_times_out_at_the_models_timeout(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(slow(3), slow(3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await backend.complete(ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)))
    assert time.monotonic() - started < 1.5  # 0.5 s with slack; not retried (fallback models take over)
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_refused_connection_is_retryable_and_says_so(backend: Backend) -> None:
    settings = model(refused_base_url(), retries=0)
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)
    with pytest.raises(UpstreamError) as raised:
        await collect(backend, ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)


@pytest.mark.anyio
async def test_a_missing_key_fails_without_calling_out(
    backend: Backend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    settings = model(fake_openai.base_url, retries=2)
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(settings))
    assert raised.value.retryable is False and KEY_ENV in str(raised.value)
    with pytest.raises(UpstreamError) as raised:
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
async def test_a_drop_mid_stream_ends_in_an_error_after_the_sent_deltas(
    backend: Backend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    deltas: list[Delta] = []
    with pytest.raises(UpstreamError) as raised:
        await collect(backend, ask(model(fake_openai.base_url, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["You ", "said: "]
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 1  # text went out: no retry


@pytest.mark.anyio
async def test_a_stream_silent_past_the_timeout_times_out(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(silent_stream(3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
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
    with pytest.raises(UpstreamTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["one "]
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_200_that_is_not_an_event_stream_is_an_error(backend: Backend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(not_sse())
    with pytest.raises(UpstreamError):
        await collect(backend, ask(model(fake_openai.base_url)))
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
    await _wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)
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
    await _wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)
    assert fake_openai.closed_streams[0] - cancelled_at < 1.0


async def _wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the fake never saw the connection close"
        await anyio.sleep(0.01)


# --- warm-up, and no network but the provider ------------------------------------------------------


@pytest.mark.anyio
async def test_warmup_calls_nobody_and_never_raises(backend: Backend, fake_openai: FakeOpenAI) -> None:
    await backend.warmup(model(fake_openai.base_url))  # type: ignore[attr-defined]
    await backend.warmup(model(fake_openai.base_url, provider_model="no-such-provider/x"))  # type: ignore[attr-defined]
    assert fake_openai.requests == []


_AUDIT_SCRIPT = """
import asyncio, json, os, sys
events = []
def hook(event, args):
    if event == "socket.connect":
        events.append(["connect", repr(args[1])])
    elif event == "socket.getaddrinfo":
        events.append(["getaddrinfo", repr(args[0])])
sys.addaudithook(hook)
import backends.litellm
from backends.base import Message, ModelCall, ModelSettings
after_import = list(events)
settings = ModelSettings(name="m", provider_model="openai/gpt-4o-mini", api_base=sys.argv[1], api_key_env="AUDIT_KEY")
call = ModelCall(model=settings, messages=(Message("user", "hi"),), temperature=0.0)
async def main():
    backend = backends.litellm.create()
    await backend.warmup(settings)
    await backend.complete(call)
    [d async for d in backend.stream(call)]
asyncio.run(main())
print(json.dumps({"offline": os.environ.get("LITELLM_OFFLINE_MODE"), "after_import": after_import, "all": events}))
"""


def test_litellm_runs_offline_and_calls_only_the_configured_provider() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "HF_"))}
    with FakeOpenAI() as fake:
        result = subprocess.run(
            [sys.executable, "-c", _AUDIT_SCRIPT, fake.base_url],
            cwd=ROOT, env={**env, "AUDIT_KEY": "sk-audit"}, capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["offline"] == "true"
        assert seen["after_import"] == []  # no cost-map fetch, no tokenizer download
        assert {tuple(e) for e in seen["all"]} <= {
            ("getaddrinfo", "'127.0.0.1'"),
            ("connect", f"('127.0.0.1', {fake.port})"),
        }
        assert len(fake.requests) == 2  # complete + stream; warm-up stayed local
