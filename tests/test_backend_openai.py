"""What only the direct OpenAI-compatible backend (aiohttp + msgspec) has: the exact framing of the event
stream (against a raw byte server), bare model names, pooled connections, one session per event loop,
and no litellm. The behaviours every backend shares are in tests/test_backend_contract.py, run against
this backend too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator

import pytest

from backends.base import Delta, ProviderError, TokenUsage
from backends.openai import OpenAIBackend
from tests.fake_openai import FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from tests.test_backend_contract import (
    ANSWER,
    ask,
    audit,
    backend,  # noqa: F401  (fixture)
    backend_env,  # noqa: F401  (fixture)
    collect,
    model,
)


@pytest.fixture
def backend_name() -> str:
    return "openai"


@pytest.mark.anyio
async def test_a_model_name_without_the_openai_prefix_is_sent_as_is(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    # litellm would read "my-org" as a provider; this backend only strips "openai/".
    await backend.complete(ask(model(fake_openai.base_url, provider_model="my-org/llama-3-8b")))
    await backend.complete(ask(model(fake_openai.base_url, provider_model="")))
    assert [r["model"] for r in fake_openai.requests] == ["my-org/llama-3-8b", "test-model"]


@pytest.mark.anyio
async def test_connections_are_reused_between_calls(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        await backend.complete(ask(model(fake_openai.base_url)))
        await collect(backend, ask(model(fake_openai.base_url)))
    session = backend._session()
    assert session.connector is not None and len(session.connector._conns) == 1  # one pooled keep-alive
    assert len(fake_openai.requests) == 6


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
    assert deltas[-1].usage == TokenUsage(7, 3)


@pytest.mark.anyio
async def test_a_stream_without_usage_gets_an_estimate(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("four bytes x4 ")), b"data: [DONE]\n\n") as base:
        deltas = await collect(backend, ask(model(base)))
    assert deltas[-1] == Delta("", TokenUsage(prompt_tokens=2 + 3, completion_tokens=4))  # ~4 bytes a token


@pytest.mark.anyio
async def test_a_stream_ending_after_usage_without_done_is_complete(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), USAGE_EVENT) as base:
        deltas = await collect(backend, ask(model(base)))
    assert deltas == [Delta("hi"), Delta("", TokenUsage(7, 3))]


@pytest.mark.anyio
async def test_a_stream_closed_cleanly_before_its_end_is_a_drop(backend: OpenAIBackend) -> None:
    deltas: list[Delta] = []
    async with raw_upstream(SSE_HEAD, event(chunk("hi"))) as base:  # no usage, no [DONE], then EOF
        with pytest.raises(ProviderError) as raised:
            await collect(backend, ask(model(base)), into=deltas)
    assert deltas == [Delta("hi")]
    assert raised.value.retryable is True and "broke off" in str(raised.value)


@pytest.mark.anyio
async def test_an_event_stream_with_no_events_is_an_error(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, b"<html>oops</html>\n") as base:
        with pytest.raises(ProviderError) as raised:
            await collect(backend, ask(model(base)))
    assert "no answer" in str(raised.value)


@pytest.mark.anyio
async def test_an_error_event_mid_stream_ends_the_stream_with_an_error(backend: OpenAIBackend) -> None:
    deltas: list[Delta] = []
    error_event = event({"error": {"message": "quoting 'hello there'", "type": "server_error"}})
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), error_event, b"data: [DONE]\n\n") as base:
        with pytest.raises(ProviderError) as raised:
            await collect(backend, ask(model(base)), into=deltas)
    assert deltas == [Delta("hi")]
    assert "server_error" in str(raised.value) and "hello" not in str(raised.value)


@pytest.mark.anyio
async def test_an_unreadable_chunk_is_an_error(backend: OpenAIBackend) -> None:
    async with raw_upstream(SSE_HEAD, event(chunk("hi")), b"data: {not json\n\n") as base:
        with pytest.raises(ProviderError) as raised:
            await collect(backend, ask(model(base)))
    assert "not readable" in str(raised.value)


@pytest.mark.anyio
async def test_a_json_answer_that_is_not_json_is_an_error(backend: OpenAIBackend) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\n"
    async with raw_upstream(head, b"<html/>\r\n") as base:
        with pytest.raises(ProviderError) as raised:
            await backend.complete(ask(model(base)))
    assert "not readable" in str(raised.value)


# --- event loops, and no litellm -------------------------------------------------------------------


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


def test_the_openai_backend_needs_no_litellm() -> None:
    seen = audit("openai")  # a fresh interpreter, run with warnings as errors
    assert seen["litellm_imported"] is False
