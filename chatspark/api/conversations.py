"""An agent's conversations: list, read, page through messages, delete, rate answers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import agent_access, json_body, json_response, page, services
from chatspark.schemas import FeedbackRequest


async def list_conversations(request: Request) -> Response:
    agent, _ = await agent_access(request, "conversations:read")
    return json_response(await services(request).conversations.list(agent, page(request)))


async def get_conversation(request: Request) -> Response:
    agent, _ = await agent_access(request, "conversations:read")
    cid = request.path_params["conversation_id"]
    return json_response(await services(request).conversations.get(agent, cid))


async def list_messages(request: Request) -> Response:
    agent, _ = await agent_access(request, "conversations:read")
    cid = request.path_params["conversation_id"]
    return json_response(await services(request).conversations.messages(agent, cid, page(request)))


async def delete_conversation(request: Request) -> Response:
    agent, _ = await agent_access(request, "conversations:write")
    await services(request).conversations.delete(agent, request.path_params["conversation_id"])
    return Response(status_code=204)


async def rate_message(request: Request) -> Response:
    agent, _ = await agent_access(request, "feedback")
    body = await json_body(request, FeedbackRequest)
    params = request.path_params
    rated = await services(request).conversations.rate(
        agent, params["conversation_id"], params["message_id"], body.rating
    )
    return json_response(rated)
