"""The widget endpoints (`/api/v1/widget/{agent}/…`): browsers talking to a public agent with a
visitor token instead of a key. Origin rule and CORS: `cors.py`; tokens and conversation ownership:
`chatspark/visitors.py`; limits: `chatspark/widget_limits.py`; the turn itself: the native one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.agents import Agent, widget_view
from chatspark.api.chat import answer
from chatspark.api.cors import public_agent
from chatspark.api.http import idempotency_key, json_body, json_response, page, response_headers, services
from chatspark.apikeys import rate_headers
from chatspark.conversations import not_found
from chatspark.errors import ValidationFailed
from chatspark.leads import LeadEnvelope, NewLead
from chatspark.schemas import WidgetChatRequest, WidgetSession, WidgetSessionRequest
from chatspark.sse import EventStream
from chatspark.visitors import Visitor, visitor_principal

VISITOR_HEADER = "chatspark-visitor"


async def session(request: Request) -> Response:
    agent = await public_agent(request)
    _refuse_server_key(request)
    await _count(request, None)
    body = await json_body(request, WidgetSessionRequest)
    visitor, token = await services(request).visitors.start(agent, body.visitor_token, body.user_id, body.hash)
    return json_response(WidgetSession(
        visitor_token=token, visitor_id=visitor.id, identified=visitor.user_id is not None, agent=widget_view(agent)
    ))


async def chat(request: Request) -> Response | EventStream:
    agent, visitor = await _visitor_call(request, counted=True)
    key = idempotency_key(request)
    body = (await json_body(request, WidgetChatRequest)).native()
    conversations = await services(request).visitors.conversations(visitor)
    if body.conversation_id is not None and not conversations.owns(body.conversation_id):
        raise not_found()
    return await answer(request, visitor_principal(visitor, agent), agent.id, body, key, conversations.new_id)


async def list_messages(request: Request) -> Response:
    agent, visitor = await _visitor_call(request, counted=False)
    cid = request.path_params["conversation_id"]
    svc = services(request)
    if not (await svc.visitors.conversations(visitor)).owns(cid):
        raise not_found()
    return json_response(await svc.conversations.messages(agent.id, cid, page(request)))


async def create_lead(request: Request) -> Response:
    """The widget's form: a lead for the agent, from a conversation this visitor started if any.
    Counted against the visitor's limit; the lead is never shown back but in this answer."""
    agent, visitor = await _visitor_call(request, counted=True)
    key = idempotency_key(request)
    body = await json_body(request, NewLead)
    svc = services(request)
    if body.conversation_id is not None and not (await svc.visitors.conversations(visitor)).owns(body.conversation_id):
        raise not_found()
    captured = await svc.leads.create(
        agent.id, body.fields(), conversation_id=body.conversation_id,
        caller=visitor_principal(visitor, agent).key_id, idempotency_key=key,
    )
    headers = {"idempotent-replayed": "true"} if captured.replayed else None
    return json_response(LeadEnvelope(lead=captured.lead), status=201, headers=headers)


async def _visitor_call(request: Request, *, counted: bool) -> tuple[Agent, Visitor]:
    """A call after the session: the allowed origin, then the visitor token (and the agent's
    identity requirement), then the limits: the visitor's own for `counted` calls (turns, leads)."""
    agent = await public_agent(request)
    _refuse_server_key(request)
    visitor = await services(request).visitors.check(agent, request.headers.get(VISITOR_HEADER))
    await _count(request, visitor if counted else None)
    return agent, visitor


async def _count(request: Request, visitor: Visitor | None) -> None:
    """Counts the request against its client address (and its visitor); the rate headers follow."""
    address = request.client.host if request.client else "unknown"
    state = await services(request).widget_limits.count(address, visitor)
    response_headers(request).update(rate_headers(state))


def _refuse_server_key(request: Request) -> None:
    """A server key never works here; one sent from a page is refused loudly, since it is public now.
    (Other schemes, such as a proxy's Basic credentials on the same origin, are ignored.)"""
    if request.headers.get("authorization", "").lstrip().lower().startswith("bearer"):
        raise ValidationFailed.field(
            "Authorization",
            "widget endpoints take no API key; a key sent from a web page is public, revoke it",
        )
