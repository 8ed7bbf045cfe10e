"""An agent's analytics over a period of UTC days."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.analytics import period
from chatspark.api.http import agent_id, json_response, principal, services


async def agent_analytics(request: Request) -> Response:
    caller = await principal(request, "analytics")
    agent = agent_id(request)
    caller.require_agent(agent)
    svc = services(request)
    await svc.agents.cached(agent)
    first, last = period(request.query_params.get("start"), request.query_params.get("end"))
    return json_response(await svc.analytics.report(agent, first, last))
