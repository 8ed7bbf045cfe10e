"""POST /api/v1/agents/{id}/chat: one turn, answered as JSON or as a server-sent event stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import agent_id, json_body, json_response, principal, services
from chatspark.chat import Chat, PreparedTurn
from chatspark.errors import ApiError, StreamingError
from chatspark.schemas import ChatRequest, StreamFailure
from chatspark.sse import DONE, EventStream

log = logging.getLogger("chatspark.chat")
_encoder = msgspec.json.Encoder()


async def chat(request: Request) -> Response | EventStream:
    caller = await principal(request, "chat")
    agent = agent_id(request)
    body = await json_body(request, ChatRequest)
    svc = services(request)
    turn = await svc.chat.prepare(agent, body, caller)
    if not body.stream:
        return json_response(await svc.chat.complete(turn))
    return EventStream(_events(svc.chat, turn), ping_seconds=svc.config.server.ping_seconds)


async def _events(chat: Chat, turn: PreparedTurn) -> AsyncIterator[bytes]:
    """The turn as SSE lines: deltas, then exactly one terminal event (done or error), then [DONE]."""
    try:
        async for event in chat.stream(turn):
            yield b"data: " + _encoder.encode(event) + b"\n\n"
    except ApiError as exc:
        yield _failure(turn, exc)
    except Exception:
        log.exception("stream failed")
        yield _failure(turn, StreamingError())
    yield DONE


def _failure(turn: PreparedTurn, cause: ApiError) -> bytes:
    """The in-stream error event: always STREAMING_ERROR (the status line said 200 already), with
    the underlying contract code in `details.cause` so a client can tell a timeout from a 502."""
    error = StreamingError(cause.message, details={"cause": cause.code} if cause.code != StreamingError.code else None)
    body = error.envelope()["error"]
    if cause.retryable:
        body["retryable"] = True
    event = StreamFailure(delta="", conversation_id=turn.conversation_id, error=body)
    return b"data: " + _encoder.encode(event) + b"\n\n"
