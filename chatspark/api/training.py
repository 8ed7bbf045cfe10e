"""An agent's training sources: list, read, add (or re-train), delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import agent_access, idempotency_key, json_body, json_response, page, services
from chatspark.errors import ResourceNotFound
from chatspark.schemas import AddSource, SourceEnvelope
from chatspark.training import view


def _training_id(request: Request) -> int:
    raw = request.path_params["training_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ResourceNotFound("No such training source for this agent.")
    return int(raw)


async def list_sources(request: Request) -> Response:
    agent, _ = await agent_access(request, "training")
    return json_response(await services(request).training.list(agent, page(request)))


async def get_source(request: Request) -> Response:
    agent, _ = await agent_access(request, "training")
    record = await services(request).training.get(agent, _training_id(request))
    return json_response(SourceEnvelope(source=view(record)))


async def add_source(request: Request) -> Response:
    agent, caller = await agent_access(request, "training")
    key = idempotency_key(request)
    config = services(request).config
    # A text source may be larger than other bodies: up to [knowledge] max_text_bytes, JSON-escaped.
    body = await json_body(request, AddSource, max(config.server.max_body_bytes, 2 * config.knowledge.max_text_bytes))
    added = await services(request).training.add(agent, body, caller=caller.key_id, idempotency_key=key)
    headers = {"idempotent-replayed": "true"} if added.outcome == "replayed" else None
    status = 201 if added.outcome == "created" or (added.outcome == "replayed" and added.record.live == 0) else 200
    return json_response(SourceEnvelope(source=view(added.record)), status=status, headers=headers)


async def delete_source(request: Request) -> Response:
    agent, _ = await agent_access(request, "training")
    await services(request).training.delete(agent, _training_id(request))
    return Response(status_code=204)
