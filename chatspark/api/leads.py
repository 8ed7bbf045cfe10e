"""An agent's leads: capture one, list them, erase one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import agent_access, idempotency_key, json_body, json_response, page, services
from chatspark.leads import LeadEnvelope, NewLead


async def create_lead(request: Request) -> Response:
    agent, caller = await agent_access(request, "leads")
    key = idempotency_key(request)
    body = await json_body(request, NewLead)
    captured = await services(request).leads.create(
        agent, body.fields(), conversation_id=body.conversation_id, caller=caller.key_id, idempotency_key=key
    )
    headers = {"idempotent-replayed": "true"} if captured.replayed else None
    return json_response(LeadEnvelope(lead=captured.lead), status=201, headers=headers)


async def list_leads(request: Request) -> Response:
    agent, _ = await agent_access(request, "leads")
    return json_response(await services(request).leads.list(agent, page(request)))


async def delete_lead(request: Request) -> Response:
    agent, _ = await agent_access(request, "leads")
    await services(request).leads.delete(agent, request.path_params["lead_id"])
    return Response(status_code=204)
