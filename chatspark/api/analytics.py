"""An agent's analytics over a period of UTC days."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.analytics import period
from chatspark.api.http import agent_access, json_response, services


async def agent_analytics(request: Request) -> Response:
    agent, _ = await agent_access(request, "analytics")
    first, last = period(request.query_params.get("start"), request.query_params.get("end"))
    return json_response(await services(request).analytics.report(agent, first, last))
