"""The clients developers already hold, against a live server with only the base URL changed: the
official `openai` SDK (sync, async, streaming, an error of each class), LangChain's `ChatOpenAI`,
and the `openai` npm package under Node (tests/node, exact versions in its package-lock.json)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.fake_openai import error, reply
from tests.test_sse_clients import NODE_PROJECT, node  # noqa: F401  (the fixture: node with tests/node installed)

ASK = [{"role": "user", "content": "When are you open?"}]
HOURS = "We are open Monday to Friday, 9:00 to 17:00 CET."


@pytest.fixture
def sdk_key(live_server):  # type: ignore[no-untyped-def]
    return live_server.key()


@pytest.fixture
def sdk(live_server, sdk_key):  # type: ignore[no-untyped-def]
    return openai.OpenAI(api_key=sdk_key, base_url=f"{live_server.base_url}/v1", max_retries=0, timeout=30)


def test_sync_completion_and_the_conversation_header(sdk, live_server, sdk_key):  # type: ignore[no-untyped-def]
    raw = sdk.chat.completions.with_raw_response.create(model="agent:1", messages=ASK)
    conversation = raw.headers["chatspark-conversation-id"]
    answer = raw.parse()
    assert answer.choices[0].message.content == HOURS
    assert answer.choices[0].finish_reason == "stop" and answer.model == "agent:1"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    # The header continues it: one conversation of two turns.
    follow = sdk.chat.completions.with_raw_response.create(
        model="agent:1", messages=[{"role": "user", "content": "Are you open on weekends?"}],
        extra_headers={"Chatspark-Conversation-Id": conversation},
    )
    assert follow.headers["chatspark-conversation-id"] == conversation
    assert follow.parse().id != answer.id
    with live_server.client(sdk_key) as http:
        stored = http.get(f"/api/v1/agents/1/conversations/{conversation}/messages").json()["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["When are you open?", "Are you open on weekends?"]


def test_async_completion_and_stream(live_server):  # type: ignore[no-untyped-def]
    key = live_server.key()  # stored before the loop runs (put_key runs a loop of its own)

    async def run() -> tuple[str, list[str]]:
        async with openai.AsyncOpenAI(api_key=key, base_url=f"{live_server.base_url}/v1",
                                      max_retries=0, timeout=30) as client:
            answer = await client.chat.completions.create(model="agent:1", messages=ASK)
            stream = await client.chat.completions.create(model="agent:1", messages=ASK, stream=True)
            parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
            return answer.choices[0].message.content or "", parts

    text, parts = asyncio.run(run())
    assert text == HOURS
    assert len(parts) > 2 and "".join(parts) == HOURS


def test_sync_stream_with_usage(sdk, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(reply("alpha beta gamma"))
    chunks = list(sdk.chat.completions.create(model="agent:2", messages=ASK, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta gamma"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1


def test_the_sdk_raises_its_error_class_for_each_status(live_server, fake_openai):  # type: ignore[no-untyped-def]
    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=f"{live_server.base_url}/v1", max_retries=0, timeout=30)

    good = client(live_server.key())
    cases = [
        (openai.BadRequestError, lambda: good.chat.completions.create(model="agent:1", messages=ASK, n=3)),
        (openai.AuthenticationError, lambda: client("cs_live_" + "x" * 40).models.list()),
        (openai.PermissionDeniedError,
         lambda: client(live_server.key(agents=[1])).chat.completions.create(model="agent:2", messages=ASK)),
        (openai.NotFoundError, lambda: good.chat.completions.create(model="agent:999999", messages=ASK)),
        (openai.InternalServerError, lambda: (fake_openai.enqueue(error(503)),
                                              good.chat.completions.create(model="agent:2", messages=ASK))),
    ]
    for kind, call in cases:
        with pytest.raises(kind) as raised:
            call()
        assert isinstance(raised.value.body, dict) and raised.value.code, kind  # OpenAI's error shape
    with pytest.raises(openai.BadRequestError) as bad:
        good.chat.completions.create(model="agent:1", messages=ASK, tools=[{"type": "function", "function": {"name": "f"}}])
    assert bad.value.param == "tools" and bad.value.code == "VALIDATION_ERROR"

    with pytest.raises(openai.ConflictError) as conflict:
        for temperature in (0.1, 0.9):  # one Idempotency-Key, two bodies
            good.chat.completions.create(model="agent:1", messages=ASK, temperature=temperature,
                                         extra_headers={"Idempotency-Key": "sdk-conflict"})
    assert conflict.value.code == "IDEMPOTENCY_CONFLICT"

    limited = client(live_server.key(rate_limit=1))
    limited.models.list()
    with pytest.raises(openai.RateLimitError) as too_many:
        limited.chat.completions.create(model="agent:1", messages=ASK)
    assert int(too_many.value.response.headers["retry-after"]) >= 1


def test_a_failure_mid_stream_raises_in_the_sdk(sdk, fake_openai):  # type: ignore[no-untyped-def]
    from tests.fake_openai import drop_mid_stream

    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    stream = sdk.chat.completions.create(model="agent:2", messages=ASK, stream=True)
    with pytest.raises(openai.APIError) as raised:
        for _ in stream:
            pass
    assert "STREAMING_ERROR" in str(raised.value.body)


def test_langchain_chat_openai_invoke_and_stream(live_server, fake_openai):  # type: ignore[no-untyped-def]
    llm = ChatOpenAI(model="agent:2", api_key=live_server.key(), base_url=f"{live_server.base_url}/v1",
                     max_retries=0, timeout=30, temperature=0.3)
    answer = llm.invoke([SystemMessage("Answer in one line."), HumanMessage("hello langchain")])
    assert answer.content == "You said: hello langchain. I saw 3 messages."
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    sent = fake_openai.requests[-1]
    assert sent["temperature"] == 0.3 and sent["messages"][1] == {"role": "system", "content": "Answer in one line."}

    fake_openai.enqueue(reply("streamed through langchain"))
    parts = [chunk.content for chunk in llm.stream("hi")]
    assert "".join(parts) == "streamed through langchain"  # type: ignore[arg-type]
    assert len([p for p in parts if p]) >= 3


def test_the_openai_npm_package_streams_under_node(live_server, fake_openai, node):  # type: ignore[no-untyped-def]  # noqa: F811
    fake_openai.enqueue(reply("hello from node"))
    done = subprocess.run(
        [node, "openai-stream.mjs", f"{live_server.base_url}/v1", live_server.key(), "agent:2", "hi"],
        cwd=NODE_PROJECT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    chunks = seen["chunks"]
    assert seen["conversationId"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "hello from node"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert seen["error"] == {"name": "NotFoundError", "status": 404, "code": "AGENT_NOT_FOUND"}
