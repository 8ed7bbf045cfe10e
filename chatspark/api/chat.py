"""POST /api/v1/agents/{id}/chat: one turn, answered as JSON or as a server-sent event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from chatspark.apikeys import Principal
from chatspark.api.http import agent_id, idempotency_key, json_body, json_response, principal, services
from chatspark.chat import Chat, PreparedTurn
from chatspark.chat_events import turn_frames
from chatspark.errors import ApiError
from chatspark.idempotent_turns import Claim
from chatspark.schemas import ChatRequest
from chatspark.services import Services
from chatspark.sse import EventStream

REPLAYED = {"idempotent-replayed": "true"}


async def chat(request: Request) -> Response | EventStream:
    caller = await principal(request, "chat")
    agent = agent_id(request)
    key = idempotency_key(request)
    body = await json_body(request, ChatRequest)
    svc = services(request)
    if key is not None:
        claim = await svc.idempotent_turns.claim(caller, key, agent, body)
        return await _idempotent(request, svc, claim, agent, body, caller)
    turn = await svc.chat.prepare(agent, body, caller)
    if not body.stream:
        return json_response(await svc.chat.complete(turn))
    return EventStream(
        _frames(svc.chat, turn), ping_seconds=svc.config.server.ping_seconds, on_close=lambda: svc.chat.settle(turn)
    )


async def _frames(chat: Chat, turn: PreparedTurn) -> AsyncIterator[bytes]:
    async for f in turn_frames(chat, turn):
        yield f.data


async def _idempotent(
    request: Request, svc: Services, claim: Claim, agent: int, body: ChatRequest, caller: Principal
) -> Response | EventStream:
    """Runs the claimed turn (if this request claimed it first), then follows its journal."""
    turns = svc.idempotent_turns
    if claim.state == "new":
        try:
            turn = await svc.chat.prepare(agent, body, caller)
        except ApiError:
            await turns.abandon(claim)
            raise
        turns.run(claim, turn, stream=body.stream)
    headers = REPLAYED if claim.state == "done" else None
    if not body.stream:
        status, payload = await turns.result(claim)
        return Response(payload, status_code=status, headers=headers, media_type="application/json")
    return EventStream(
        turns.frames(claim, _last_event_id(request)), ping_seconds=svc.config.server.ping_seconds, headers=headers
    )


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0
