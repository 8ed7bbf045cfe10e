"""The direct OpenAI-compatible backend (aiohttp + msgspec), against the fake OpenAI server on 127.0.0.1,
and against a raw byte server where the exact framing of the event stream matters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from backends import load_backend
from backends.base import (
    ContextTooLong,
    Delta,
    Message,
    ModelCall,
    ModelSettings,
    UpstreamError,
    UpstreamTimeout,
    Usage,
)
from backends.openai import OpenAIBackend
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

KEY_ENV = "CHATSPARK_TEST_OPENAI_KEY"
KEY = "sk-fake-test-key-0123456789"
ROOT = Path(__file__).resolve().parents[1]
ANSWER = "You said: hello there. I saw 2 messages."  # the fake's echo of `ask()`
FAKE_USAGE = Usage(prompt_tokens=4, completion_tokens=8)  # the fake counts words


@pytest.fixture
def backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def backend(backend_env: None) -> AsyncIterator[OpenAIBackend]:
    made = load_backend("openai")
    assert isinstance(made, OpenAIBackend)
    yield made
    await made.aclose()


def model(api_base: str | None, **settings: object) -> ModelSettings:
    values: dict[str, object] = {
        "provider_model": "openai/gpt-4o-mini", "retries": 0, "timeout_seconds": 5.0, "api_key_env": KEY_ENV, **settings
    }
    return ModelSettings(name="test-model", api_base=api_base, **values)  # type: ignore[arg-type]


def ask(settings: ModelSettings, text: str = "hello there") -> ModelCall:
    return ModelCall(model=settings, messages=(Message("system", "be brief"), Message("user", text)), temperature=0.3)


async def collect(backend: OpenAIBackend, call: ModelCall, into: list[Delta] | None = None) -> list[Delta]:
    deltas = into if into is not None else []
    stream = backend.stream(call)
    try:
        async for delta in stream:
            deltas.append(delta)
    finally:
        await stream.aclose()
    return deltas


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_complete_returns_the_providers_answer_and_usage(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    settings = model(fake_openai.base_url, max_output_tokens=321)
    completion = await backend.complete(ask(settings))
    assert completion.text == ANSWER
    assert completion.usage == FAKE_USAGE
    [sent] = fake_openai.requests
    assert sent["model"] == "gpt-4o-mini"  # the litellm-style "openai/" prefix is stripped
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 321
    assert "stream" not in sent
    assert fake_openai.headers[0]["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_stream_deltas_join_to_the_answer_and_end_with_usage(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert [d.text for d in deltas[:3]] == ["You ", "said: ", "hello "]  # word by word, as the fake sent it
    assert "".join(d.text for d in deltas) == ANSWER
    assert all(d.usage is None for d in deltas[:-1])
    assert deltas[-1] == Delta("", FAKE_USAGE)
    [sent] = fake_openai.requests
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-4o-mini"


@pytest.mark.anyio
async def test_a_model_name_without_prefix_is_sent_as_is(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await backend.complete(ask(model(fake_openai.base_url, provider_model="my-org/llama-3-8b")))
    await backend.complete(ask(model(fake_openai.base_url, provider_model="")))
    assert [r["model"] for r in fake_openai.requests] == ["my-org/llama-3-8b", "test-model"]


@pytest.mark.anyio
async def test_provider_endpoint_and_key_default_to_the_openai_variables(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-api-key")
    completion = await backend.complete(ask(model(None, api_key_env=None)))
    assert completion.text == ANSWER
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-from-openai-api-key"


@pytest.mark.anyio
async def test_openai_api_base_is_used_when_openai_base_url_is_unset(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", fake_openai.base_url + "/")  # a trailing slash is fine
    completion = await backend.complete(ask(model(None)))
    assert completion.text == ANSWER


@pytest.mark.anyio
async def test_the_key_comes_from_the_variable_the_model_names(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one")
    monkeypatch.setenv("CHATSPARK_TEST_OTHER_KEY", "sk-this-one")
    await collect(backend, ask(model(fake_openai.base_url, api_key_env="CHATSPARK_TEST_OTHER_KEY")))
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-this-one"


@pytest.mark.anyio
async def test_repetitive_output_is_streamed_whole(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(reply("ha " * 150, chunks=150))
    deltas = await collect(backend, ask(model(fake_openai.base_url)))
    assert "".join(d.text for d in deltas) == "ha " * 150


@pytest.mark.anyio
async def test_connections_are_reused_between_calls(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        await backend.complete(ask(model(fake_openai.base_url)))
        await collect(backend, ask(model(fake_openai.base_url)))
    session = backend._session()
    assert session.connector is not None and len(session.connector._conns) == 1  # one pooled keep-alive
    assert len(fake_openai.requests) == 6


# --- retries and error mapping ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_rate_limit_is_retried_and_then_answers(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(429))
    completion = await backend.complete(ask(model(fake_openai.base_url, retries=1)))
    assert completion.text == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_rate_limit_past_the_retries_is_a_retryable_error(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(429), error(429))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=1)))
    assert raised.value.retryable is True and "429" in str(raised.value)
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_server_error_without_retries_is_one_request_and_retryable(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(500))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=0)))
    assert raised.value.retryable is True and "500" in str(raised.value)
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_retries_stop_after_the_configured_count_with_the_backoff_between(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(error(503), error(503), error(503), error(503))
    started = time.monotonic()
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 3
    assert 0.55 <= time.monotonic() - started < 2.0  # 0.2 s + 0.4 s of backoff


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_final_and_not_retried(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.enqueue(error(status))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    assert raised.value.retryable is False
    assert str(status) in str(raised.value)
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_context_window_refusal_is_context_too_long(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(400, "This model's maximum context length is 128000 tokens. However, you requested 200000."))
    with pytest.raises(ContextTooLong):
        await backend.complete(ask(model(fake_openai.base_url, retries=2)))
    fake_openai.enqueue(error(400, "This model's maximum context length is 128000 tokens."))
    with pytest.raises(ContextTooLong):
        await collect(backend, ask(model(fake_openai.base_url, retries=2)))
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_errors_carry_neither_user_text_nor_the_key(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    # Providers do quote request content and (masked) keys in their error messages.
    fake_openai.enqueue(error(400, f"Invalid content 'my secret question' for key {KEY}"))
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(model(fake_openai.base_url), "my secret question"))
    assert "secret" not in str(raised.value) and KEY not in str(raised.value)
    assert "test-model" in str(raised.value)


@pytest.mark.anyio
async def test_a_slow_provider_times_out_at_the_models_timeout(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(slow(3), slow(3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await backend.complete(ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)))
    assert time.monotonic() - started < 1.5  # 0.5 s with slack; not retried (fallback models take over)
    assert len(fake_openai.requests) == 1
    await _wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)  # the abandoned request is closed


@pytest.mark.anyio
async def test_a_refused_connection_is_retryable_and_says_so(backend: OpenAIBackend) -> None:
    settings = model(refused_base_url(), retries=0)
    with pytest.raises(UpstreamError) as raised:
        await backend.complete(ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)
    with pytest.raises(UpstreamError) as raised:
        await collect(backend, ask(settings))
    assert raised.value.retryable is True and "reach" in str(raised.value)


@pytest.mark.anyio
async def test_a_refused_connection_is_retried(backend: OpenAIBackend) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        await backend.complete(ask(model(refused_base_url(), retries=1)))
    assert time.monotonic() - started >= 0.2  # one backoff pause: there was a second attempt


@pytest.mark.anyio
async def test_a_missing_key_fails_without_calling_out(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
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
async def test_a_stream_is_retried_before_its_first_delta(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(503))
    deltas = await collect(backend, ask(model(fake_openai.base_url, retries=1)))
    assert "".join(d.text for d in deltas) == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_stream_dropped_before_its_first_delta_is_retried(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=0))
    deltas = await collect(backend, ask(model(fake_openai.base_url, retries=1)))
    assert "".join(d.text for d in deltas) == ANSWER
    assert len(fake_openai.requests) == 2


@pytest.mark.anyio
async def test_a_drop_mid_stream_ends_in_an_error_after_the_sent_deltas(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    deltas: list[Delta] = []
    with pytest.raises(UpstreamError) as raised:
        await collect(backend, ask(model(fake_openai.base_url, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["You ", "said: "]
    assert raised.value.retryable is True
    assert len(fake_openai.requests) == 1  # text went out: no retry


@pytest.mark.anyio
async def test_a_stream_slow_to_answer_times_out(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(slow(3))  # no response head for 3 s
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5)))
    assert time.monotonic() - started < 1.5


@pytest.mark.anyio
async def test_a_stream_silent_past_the_timeout_times_out(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(silent_stream(3))  # the head, then 3 s of nothing
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5)))
    assert time.monotonic() - started < 1.5


@pytest.mark.anyio
async def test_the_timeout_bounds_each_wait_not_the_whole_stream(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("tick " * 8, chunks=8, gap=0.15))  # 1.2 s in all, never 0.5 s silent
    deltas = await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5)))
    assert "".join(d.text for d in deltas) == "tick " * 8


@pytest.mark.anyio
async def test_a_stream_stalling_after_its_first_delta_times_out(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("one two", chunks=2, gap=3))
    deltas: list[Delta] = []
    with pytest.raises(UpstreamTimeout):
        await collect(backend, ask(model(fake_openai.base_url, timeout_seconds=0.5, retries=1)), into=deltas)
    assert [d.text for d in deltas] == ["one "]
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_a_200_that_is_not_an_event_stream_is_an_error(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(not_sse())
    with pytest.raises(UpstreamError) as raised:
        await collect(backend, ask(model(fake_openai.base_url)))
    assert "without an event stream" in str(raised.value) and "html" not in str(raised.value).lower()
    assert len(fake_openai.requests) == 1


@pytest.mark.anyio
async def test_closing_a_stream_early_closes_the_provider_connection(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("word " * 40, chunks=40, gap=0.1))  # a 4 s stream
    stream = backend.stream(ask(model(fake_openai.base_url)))
    first = await stream.__anext__()
    assert first.text == "word "
    closed_at = time.monotonic()
    await stream.aclose()
    await _wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)
    assert fake_openai.closed_streams[0] - closed_at < 0.3


@pytest.mark.anyio
async def test_cancelling_a_stream_consumer_closes_the_provider_connection(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(reply("word " * 40, chunks=40, gap=0.1))
    received: list[Delta] = []
    with anyio.move_on_after(0.35):
        async with contextlib.aclosing(backend.stream(ask(model(fake_openai.base_url)))) as stream:
            async for delta in stream:
                received.append(delta)
    cancelled_at = time.monotonic()
    assert 1 <= len(received) < 40
    await _wait_for(lambda: bool(fake_openai.closed_streams), seconds=1.0)
    assert fake_openai.closed_streams[0] - cancelled_at < 0.3


async def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the fake never saw the connection close"
        await anyio.sleep(0.01)


# --- event-stream framing, byte by byte ------------------------------------------------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"


def event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(text: str) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


USAGE_EVENT = event({"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})


@contextlib.asynccontextmanager
async def raw_upstream(*pieces: bytes, gap: float = 0.02) -> AsyncIterator[str]:
    """A provider that answers one request with exactly these bytes, one write (one TCP read) each,
    then closes; yields its base URL."""

    answering: set[asyncio.Task[None]] = set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answering.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
            await reader.readexactly(length)
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(gap)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up first, or the test is over
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        try:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        finally:
            for task in answering:
                task.cancel()
            await asyncio.gather(*answering)


@pytest.mark.anyio
async def test_events_split_across_reads_and_odd_framing_are_parsed(backend: OpenAIBackend) -> None:
    body = (
        b": keep-alive comment\n\n"
        + b"event: message\r\nid: 1\r\n" + event(chunk("Hel")).replace(b"\n", b"\r\n")  # CRLF lines
        + event(chunk("lo, ")) + event({"choices": [{"delta": {"role": "assistant"}}]})  # no content
        + b'data: {"choices": [{"delta":\ndata: {"content": "wor"}}]}\n\n'  # one event on two data lines
        + event(chunk("ld\n")) + USAGE_EVENT + b"data: [DONE]\n\n"
    )
    cuts = [5, 40, 41, 80, 130, 131, 200, 260, len(body) - 3]  # mid-prefix, mid-JSON, mid-line-ending
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    async with raw_upstream(SSE_HEAD, *pieces, gap=0.01) as base:
        deltas = await collect(backend, ask(model(base)))
    assert [d.text for d in deltas] == ["Hel", "lo, ", "wor", "ld\n", ""]
    assert deltas[-1].usage == Usage(7, 3)


@pytest.mark.anyio
async def test_a_stream_without_usage_gets_an_estimate(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("four bytes x4 ")), b"data: [DONE]\n\n") as base:
        deltas = await collect(backend, ask(model(base)))
    assert deltas[-1] == Delta("", Usage(prompt_tokens=2 + 3, completion_tokens=4))  # ~4 bytes a token


@pytest.mark.anyio
async def test_a_stream_ending_after_usage_without_done_is_complete(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), USAGE_EVENT) as base:
        deltas = await collect(backend, ask(model(base)))
    assert deltas == [Delta("hi"), Delta("", Usage(7, 3))]


@pytest.mark.anyio
async def test_a_stream_closed_cleanly_before_its_end_is_a_drop(backend: OpenAIBackend) -> None:
    deltas: list[Delta] = []
    async with raw_upstream(SSE_HEAD, event(chunk("hi"))) as base:  # no usage, no [DONE], then EOF
        with pytest.raises(UpstreamError) as raised:
            await collect(backend, ask(model(base)), into=deltas)
    assert deltas == [Delta("hi")]
    assert raised.value.retryable is True and "broke off" in str(raised.value)


@pytest.mark.anyio
async def test_an_event_stream_with_no_events_is_an_error(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, b"<html>oops</html>\n") as base:
        with pytest.raises(UpstreamError) as raised:
            await collect(backend, ask(model(base)))
    assert "no answer" in str(raised.value)


@pytest.mark.anyio
async def test_an_error_event_mid_stream_ends_the_stream_with_an_error(backend: OpenAIBackend) -> None:
    deltas: list[Delta] = []
    error_event = event({"error": {"message": "quoting 'hello there'", "type": "server_error"}})
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), error_event, b"data: [DONE]\n\n") as base:
        with pytest.raises(UpstreamError) as raised:
            await collect(backend, ask(model(base)), into=deltas)
    assert deltas == [Delta("hi")]
    assert "server_error" in str(raised.value) and "hello" not in str(raised.value)


@pytest.mark.anyio
async def test_an_unreadable_chunk_is_an_error(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), b"data: {not json\n\n") as base:
        with pytest.raises(UpstreamError) as raised:
            await collect(backend, ask(model(base)))
    assert "not readable" in str(raised.value)


@pytest.mark.anyio
async def test_a_json_answer_that_is_not_json_is_an_error(backend: OpenAIBackend) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\n"
    async with raw_upstream(head, b"<html/>\r\n") as base:
        with pytest.raises(UpstreamError) as raised:
            await backend.complete(ask(model(base)))
    assert "not readable" in str(raised.value)


# --- event loops, warm-up, and no network but the provider -----------------------------------------


def test_each_event_loop_gets_its_own_session(backend_env: None, fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend()
    call = ask(model(fake_openai.base_url))
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()

    def in_other(coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, other).result(timeout=5)  # type: ignore[arg-type]

    async def here() -> str:
        try:
            return (await backend.complete(call)).text
        finally:
            await backend.aclose()

    try:
        assert in_other(backend.complete(call)).text == ANSWER  # type: ignore[attr-defined]
        assert asyncio.run(here()) == ANSWER
        assert asyncio.run(here()) == ANSWER  # a later loop, after the last one closed
        assert in_other(backend.complete(call)).text == ANSWER  # type: ignore[attr-defined]
        in_other(backend.aclose())
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(timeout=5)
        other.close()
    assert len(fake_openai.requests) == 4


@pytest.mark.anyio
async def test_warmup_calls_nobody(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await backend.warmup(model(fake_openai.base_url))
    assert fake_openai.requests == []
    assert (await backend.complete(ask(model(fake_openai.base_url)))).text == ANSWER


_AUDIT_SCRIPT = """
import asyncio, json, sys
events = []
def hook(event, args):
    if event == "socket.connect":
        events.append(["connect", repr(args[1])])
    elif event == "socket.getaddrinfo":
        events.append(["getaddrinfo", repr(args[0])])
sys.addaudithook(hook)
import backends.openai
from backends.base import Message, ModelCall, ModelSettings
after_import = list(events)
settings = ModelSettings(name="m", backend="openai", provider_model="gpt-4o-mini", api_base=sys.argv[1],
                         api_key_env="AUDIT_KEY")
call = ModelCall(model=settings, messages=(Message("user", "hi"),), temperature=0.0)
async def main():
    backend = backends.openai.create()
    await backend.warmup(settings)
    await backend.complete(call)
    [d async for d in backend.stream(call)]
    await backend.aclose()
asyncio.run(main())
print(json.dumps({"after_import": after_import, "all": events, "litellm": "litellm" in sys.modules}))
"""


def test_the_openai_backend_calls_only_the_configured_provider_and_needs_no_litellm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "HF_"))}
    with FakeOpenAI() as fake:
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", _AUDIT_SCRIPT, fake.base_url],
            cwd=ROOT, env={**env, "AUDIT_KEY": "sk-audit"}, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["after_import"] == []
        assert seen["litellm"] is False
        assert {tuple(e) for e in seen["all"]} <= {
            ("getaddrinfo", "'127.0.0.1'"),
            ("connect", f"('127.0.0.1', {fake.port})"),
        }
        assert len(fake.requests) == 2  # complete + stream
