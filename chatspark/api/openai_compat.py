"""The OpenAI-compatible endpoint: `POST /v1/chat/completions` and `GET /v1/models`.

A thin translation over the native turn: the same key checks, rate limit, credits, lease,
history, knowledge, store and turn journal (Idempotency-Key) as `POST /api/v1/agents/{id}/chat`;
only the request and answer shapes differ (chatspark/openai_wire.py). Every error, whatever
raised it, answers in OpenAI's shape with the contract's status and code.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from chatspark import errors
from chatspark.api.http import idempotency_key, json_body, principal, services
from chatspark.apikeys import Principal
from chatspark.errors import ApiError, ErrorEnvelope
from chatspark.openai_wire import (
    MODEL_PREFIX,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    ModelEntry,
    ModelList,
    Usage,
    completion,
    completion_id,
    native_event,
    openai_error,
    split_messages,
    unsupported,
)
from chatspark.schemas import ChatRequest, ChatResponse
from chatspark.services import Services
from chatspark.sse import EventStream
from chatspark.turn import ClientContext
from chatspark.turn_events import turn_events

log = logging.getLogger("chatspark.openai")
CONVERSATION_HEADER = "chatspark-conversation-id"
_encoder = msgspec.json.Encoder()
_response = msgspec.json.Decoder(ChatResponse)
_envelope = msgspec.json.Decoder(ErrorEnvelope)
_LIST_PAGE = 100


Handler = Callable[[Request], Awaitable[Response | EventStream]]


def openai_errors(handler: Handler) -> Handler:
    """Answers what the handler raises in OpenAI's error shape (a bug: 500, logged)."""

    async def answer(request: Request) -> Response | EventStream:
        try:
            return await handler(request)
        except ClientDisconnect:
            raise  # nobody to answer (api/errors.py logs it as the native endpoints' is)
        except Exception as exc:
            error = errors.contract_error(exc)
            if error is not exc and isinstance(error, errors.InternalError):
                log.exception("the OpenAI-compatible endpoint failed")
            elif error.status >= 500:
                log.warning("%s: %s", error.code, error.message)
            return error_response(error)

    return answer


def error_response(error: ApiError) -> Response:
    body = openai_error(error.body(), error.status)
    return Response(_encoder.encode(body), status_code=error.status, headers=error.headers,
                    media_type="application/json")


@openai_errors
async def list_models(request: Request) -> Response:
    """The agents this key may use, as models `agent:<id>`. Either scope will do: a chat-only key
    needs to know what it may call."""
    caller = await principal(request, "agents:read", "chat")
    svc = services(request)
    agents = await _all_agents(svc, caller)
    data = [ModelEntry(id=f"{MODEL_PREFIX}{a.id}", created=a.created_at // 1000) for a in agents]
    return Response(_encoder.encode(ModelList(data=data)), media_type="application/json")


@openai_errors
async def chat_completions(request: Request) -> Response | EventStream:
    caller = await principal(request, "chat")
    key = idempotency_key(request)
    body = await json_body(request, ChatCompletionRequest)
    unsupported(body)
    svc = services(request)
    agent = await _agent_of(svc, caller, body.model)
    parts = split_messages(body.messages)
    conversation = request.headers.get(CONVERSATION_HEADER) or (body.metadata or {}).get("conversation_id")
    native = ChatRequest(message=parts.message, conversation_id=conversation, stream=body.streaming,
                         temperature=body.temperature)
    client = ClientContext(system=parts.system, earlier=parts.earlier, max_tokens=body.output_cap)
    model = f"{MODEL_PREFIX}{agent}"
    created = int(time.time())
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if key is None:
        turn = await svc.turns.prepare(agent, native, caller, client=client)
        headers = {CONVERSATION_HEADER: turn.conversation_id}
        if not body.streaming:
            answer = await svc.turns.complete(turn)
            return _completion_response(completion(answer, model, created), headers)
        frames = turn_events(svc.turns, turn)
        chunks = _chunks(frames, completion_id(turn.message_id), model, created, include_usage)
        return EventStream(chunks, ping_seconds=svc.config.server.ping_seconds, headers=headers,
                           on_close=turn.resources.release)
    return await _idempotent(svc, caller, key, agent, native, client, body, model, created, include_usage)


async def _idempotent(
    svc: Services, caller: Principal, key: str, agent: int, native: ChatRequest, client: ClientContext,
    body: ChatCompletionRequest, model: str, created: int, include_usage: bool,
) -> Response | EventStream:
    """Through the turn journal, as the native endpoint does: the first request runs the turn, every
    retry with the key follows or replays it. The answer's id is derived from the key, so a
    follower names the same completion before the turn has finished."""
    turns = svc.idempotent_turns
    claim = await turns.claim(caller, key, agent, _KeyedBody(conversation_id=native.conversation_id, request=body))
    # From the key's run, not the key alone: the same key used again once its record expired (24 h)
    # names another turn, which a reused id would make the store take for a retried write.
    message_id = "msg_" + hashlib.sha256(f"openai-compatible\0{claim.digest}\0{claim.run}".encode()).hexdigest()[:32]
    headers: dict[str, str] = {}
    if claim.state == "new":
        try:
            turn = await svc.turns.prepare(agent, native, caller, client=client, message_id=message_id)
        except BaseException:
            await turns.abandon(claim)
            raise
        turns.run(claim, turn, stream=body.streaming)
        headers[CONVERSATION_HEADER] = turn.conversation_id
    if claim.state == "done":
        headers["idempotent-replayed"] = "true"
    if not body.streaming:
        status, payload = await turns.result(claim)
        if status != 200:
            return _replayed_error(status, payload)
        answer = _response.decode(payload)
        headers[CONVERSATION_HEADER] = answer.conversation_id
        return _completion_response(completion(answer, model, created), headers)
    frames = turns.frames(claim)
    if CONVERSATION_HEADER not in headers:
        # A follower learns the conversation from the turn's first event (it arrives with the first token).
        try:
            first = await anext(frames)
        except BaseException:
            await frames.aclose()  # type: ignore[attr-defined]
            raise
        conversation = native_event.decode(_payload(first)).conversation_id
        if conversation:
            headers[CONVERSATION_HEADER] = conversation
        frames = _prepend(first, frames)
    chunks = _chunks(frames, completion_id(message_id), model, created, include_usage)
    return EventStream(chunks, ping_seconds=svc.config.server.ping_seconds, headers=headers)


class _KeyedBody(msgspec.Struct, frozen=True):
    """What an Idempotency-Key is bound to here: the whole request and the conversation it continues."""

    conversation_id: str | None
    request: ChatCompletionRequest


def _replayed_error(status: int, payload: bytes) -> Response:
    body = openai_error(_envelope.decode(payload).error, status)
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _completion_response(answer: object, headers: dict[str, str]) -> Response:
    return Response(_encoder.encode(answer), headers=headers, media_type="application/json")


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async with aclosing(rest):  # type: ignore[type-var]
        async for f in rest:
            yield f


def _payload(frame: bytes) -> bytes:
    """The `data:` of one native frame (`id: N\\ndata: <payload>\\n\\n`)."""
    start = frame.index(b"data: ") + 6
    return frame[start: frame.index(b"\n", start)]


async def _chunks(
    frames: AsyncIterator[bytes], cid: str, model: str, created: int, include_usage: bool,
) -> AsyncIterator[bytes]:
    """Native frames as `chat.completion.chunk` events: the role first, each delta, `finish_reason`,
    the usage (when asked), `[DONE]`. A native error event becomes OpenAI's in-stream `{"error": …}`."""

    def chunk(delta: Delta, finish: bool = False, usage: Usage | None = None, choices: bool = True) -> bytes:
        body = ChatCompletionChunk(
            id=cid, created=created, model=model,
            choices=[ChunkChoice(delta=delta, finish_reason="stop" if finish else None)] if choices else [],
            usage=usage if include_usage else msgspec.UNSET,
        )
        return b"data: " + _encoder.encode(body) + b"\n\n"

    # A content chunk is this template around its text: one string encoded per delta, not a chunk.
    head, tail = chunk(Delta(content="\0")).split(b'"\\u0000"')
    yield chunk(Delta(role="assistant", content=""))
    async with aclosing(frames):  # type: ignore[type-var]
        async for frame in frames:
            payload = _payload(frame)
            if payload == b"[DONE]":
                break
            event = native_event.decode(payload)
            if event.error is not None:
                status = errors.ERROR_STATUS.get(
                    event.error.details.cause if event.error.details and event.error.details.cause else "", 500
                )
                yield b"data: " + _encoder.encode(openai_error(event.error, status)) + b"\n\n"
                break
            if event.done:
                yield chunk(Delta(), finish=True)
                if include_usage and event.usage is not None:
                    yield chunk(Delta(), usage=Usage.of(event.usage), choices=False)
                break
            if event.delta:
                yield head + _encoder.encode(event.delta) + tail
    yield b"data: [DONE]\n\n"


async def _agent_of(svc: Services, caller: Principal, model: str) -> int:
    """The agent `model` names: `agent:<id>`, `ag_<id>`, or the name of exactly one agent this key
    may use. Access and existence are checked by the turn (403/404 as on the native endpoint)."""
    for prefix in (MODEL_PREFIX, "ag_"):
        digits = model.removeprefix(prefix)
        if model.startswith(prefix) and digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(digits)
    named = [a.id for a in await _all_agents(svc, caller) if a.name == model]
    if len(named) != 1:
        problem = "names no agent this key may use" if not named else "names more than one agent; use agent:<id>"
        raise errors.ValidationFailed.field("model", f"{problem} (see GET /v1/models)")
    return named[0]


async def _all_agents(svc: Services, caller: Principal) -> list:  # type: ignore[type-arg]
    found = []
    after = None
    while True:
        page = await svc.agents.list(after, _LIST_PAGE, caller.agents)
        found += page
        if len(page) < _LIST_PAGE:
            return found
        after = (page[-1].created_at, page[-1].id)
