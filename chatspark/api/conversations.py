"""An agent's conversations: list, read, page through messages, delete, rate answers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import agent_id, json_body, json_response, page, principal, services
from chatspark.schemas import FeedbackRequest


async def _agent(request: Request, scope: str) -> int:
    """The checked caller may use the path's agent, which exists."""
    caller = await principal(request, scope)
    agent = agent_id(request)
    caller.require_agent(agent)
    await services(request).agents.cached(agent)
    return agent


async def list_conversations(request: Request) -> Response:
    agent = await _agent(request, "conversations:read")
    return json_response(await services(request).conversations.list(agent, page(request)))


async def get_conversation(request: Request) -> Response:
    agent = await _agent(request, "conversations:read")
    cid = request.path_params["conversation_id"]
    return json_response(await services(request).conversations.get(agent, cid))


async def list_messages(request: Request) -> Response:
    agent = await _agent(request, "conversations:read")
    cid = request.path_params["conversation_id"]
    return json_response(await services(request).conversations.messages(agent, cid, page(request)))


async def delete_conversation(request: Request) -> Response:
    agent = await _agent(request, "conversations:write")
    await services(request).conversations.delete(agent, request.path_params["conversation_id"])
    return Response(status_code=204)


async def rate_message(request: Request) -> Response:
    agent = await _agent(request, "feedback")
    body = await json_body(request, FeedbackRequest)
    params = request.path_params
    rated = await services(request).conversations.rate(
        agent, params["conversation_id"], params["message_id"], body.rating
    )
    return json_response(rated)
