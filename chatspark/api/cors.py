"""Who may call the widget endpoints from a browser: the origin rule, and the CORS grant on answers.

A request passes when its agent is public (non-empty `allowedOrigins`) and its `Origin` is one of
them, or the service's own origin (`<scheme>://<Host>`: a page the service serves itself). Anything
else is refused here, server-side (a curl without `Origin` too), and its answer carries no
`Access-Control-*` header; every answer after the check carries the grant, errors and streams too.

One gap in the design's rule, closed here: browsers send no `Origin` on a same-origin GET (the
Fetch standard adds it to CORS requests and to other methods only), so the service's own demo page
reading its messages would be refused. A request without `Origin` that says `Sec-Fetch-Site:
same-origin` (which browsers set, and which page scripts cannot) counts as the service's own origin.
A non-browser client can forge that header as easily as `Origin` itself, so this grants nothing
that sending `Origin` would not.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.agents import Agent
from chatspark.api.http import agent_id, response_headers, services
from chatspark.errors import AgentAccessDenied

EXPOSED = "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
PREFLIGHT = {
    "access-control-allow-methods": "GET, POST",
    "access-control-allow-headers": "content-type, chatspark-visitor, idempotency-key, last-event-id, x-request-id",
    "access-control-max-age": "600",
}


async def public_agent(request: Request) -> Agent:
    """The path's agent, if this request's origin may use it. Raises AgentNotFound, AgentAccessDenied."""
    headers = response_headers(request)
    headers["vary"] = "Origin"  # refused or granted, the answer depends on it (shared caches)
    agent = await services(request).agents.cached(agent_id(request))
    origins = request.headers.getlist("origin")
    origin = origins[0] if len(origins) == 1 else None
    if not origins and request.headers.get("sec-fetch-site") == "same-origin":
        origin = _own_origin(request)
    if not agent.public or origin is None or (origin not in agent.allowed_origins and origin != _own_origin(request)):
        raise AgentAccessDenied("This agent does not accept browser requests from this origin.")
    headers["access-control-allow-origin"] = origin
    headers["access-control-expose-headers"] = EXPOSED
    return agent


async def preflight(request: Request) -> Response:
    """OPTIONS: 204 with the methods and headers the widget endpoints take, for allowed origins only."""
    await public_agent(request)
    return Response(status_code=204, headers=PREFLIGHT)


def _own_origin(request: Request) -> str | None:
    host = request.headers.get("host")
    return f"{request.url.scheme}://{host.lower()}" if host else None
