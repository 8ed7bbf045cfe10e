"""POST /api/v1/agents/{id}/chat: one turn, answered as JSON or as a server-sent event stream."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from chatspark import metrics
from chatspark.api.http import agent_id, idempotency_key, json_body, json_response, principal, services
from chatspark.apikeys import Principal
from chatspark.idempotent_turns import Claim
from chatspark.schemas import ChatRequest
from chatspark.services import Services
from chatspark.sse import EventStream
from chatspark.turn import new_conversation_id
from chatspark.turn_events import turn_events

REPLAYED = {"idempotent-replayed": "true"}


async def chat(request: Request) -> Response | EventStream:
    caller = await principal(request, "chat")
    agent = agent_id(request)
    key = idempotency_key(request)
    body = await json_body(request, ChatRequest)
    return await answer(request, caller, agent, body, key)


async def answer(
    request: Request, caller: Principal, agent: int, body: ChatRequest, key: str | None,
    new_id: Callable[[], str] = new_conversation_id,
) -> Response | EventStream:
    """One turn for a checked caller, as JSON or a stream, directly or through the turn journal
    (`key`: its Idempotency-Key). The native chat endpoint and the widget's both answer here."""
    svc = services(request)
    if key is not None:
        claim = await svc.idempotent_turns.claim(caller, key, agent, body)
        return await _idempotent(request, svc, claim, agent, body, caller, new_id)
    turn = await svc.turns.prepare(agent, body, caller, new_id=new_id)
    if not body.stream:
        return json_response(await svc.turns.complete(turn))
    # on_close: a client that left before the stream started still gives the turn's lease and credit back.
    return EventStream(
        turn_events(svc.turns, turn), ping_seconds=svc.config.server.ping_seconds, on_close=turn.resources.release
    )


async def _idempotent(
    request: Request, svc: Services, claim: Claim, agent: int, body: ChatRequest, caller: Principal,
    new_id: Callable[[], str],
) -> Response | EventStream:
    """Runs the claimed turn (if this request claimed it first), then follows its journal."""
    turns = svc.idempotent_turns
    metrics.idempotent(claim.state)
    if claim.state == "new":
        try:
            turn = await svc.turns.prepare(agent, body, caller, new_id=new_id)
        except BaseException:
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
