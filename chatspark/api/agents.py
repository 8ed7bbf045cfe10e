"""The agent management endpoints: list, read, create, change, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark import agents as agent_views
from chatspark.api.http import agent_id, idempotency_key, json_body, json_response, page, principal, services
from chatspark.agents import AgentChanges
from chatspark.errors import AgentAccessDenied
from chatspark.pagination import numeric
from chatspark.schemas import AgentEnvelope, AgentsPage


async def list_agents(request: Request) -> Response:
    caller = await principal(request, "agents:read")
    query = page(request)
    svc = services(request)
    shown, next_cursor = await svc.cursors.page(
        "agents", query, lambda after, n: svc.agents.list(numeric(after), n, caller.agents),
        lambda agent: (agent.created_at, agent.id),
    )
    return json_response(AgentsPage(agents=[agent_views.summary(a) for a in shown], next_cursor=next_cursor))


async def get_agent(request: Request) -> Response:
    caller = await principal(request, "agents:read")
    agent = agent_id(request)
    caller.require_agent(agent)
    found = await services(request).agents.fetch(agent)
    return json_response(AgentEnvelope(agent=agent_views.detail(found)))


async def create_agent(request: Request) -> Response:
    caller = await principal(request, "agents:write")
    if caller.agents is not None:
        # A key limited to some agents could not use, read or delete what it created.
        raise AgentAccessDenied("A key restricted to some agents cannot create agents.")
    key = idempotency_key(request)
    changes = await json_body(request, AgentChanges)
    created = await services(request).agents.create(changes, caller=caller.key_id, idempotency_key=key)
    headers = {"idempotent-replayed": "true"} if created.replayed else None
    return json_response(AgentEnvelope(agent=agent_views.detail(created.agent)), status=201, headers=headers)


async def update_agent(request: Request) -> Response:
    caller = await principal(request, "agents:write")
    agent = agent_id(request)
    caller.require_agent(agent)
    changes = await json_body(request, AgentChanges)
    updated = await services(request).agents.update(agent, changes)
    return json_response(AgentEnvelope(agent=agent_views.detail(updated)))


async def delete_agent(request: Request) -> Response:
    caller = await principal(request, "agents:write")
    agent = agent_id(request)
    caller.require_agent(agent)
    await services(request).agents.delete(agent)
    return Response(status_code=204)
