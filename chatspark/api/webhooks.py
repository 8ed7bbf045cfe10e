"""The webhook endpoints: list, register, read, change, remove, and one webhook's recent deliveries."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import json_body, json_response, page, principal, services
from chatspark.apikeys import Principal
from chatspark.errors import AgentAccessDenied, ResourceNotFound
from chatspark.webhooks import NewWebhook, WebhookChanges, WebhookCreated, WebhookEnvelope, view


async def _caller(request: Request) -> Principal:
    """Webhooks belong to the whole service: a key restricted to some agents may not manage them."""
    caller = await principal(request, "webhooks")
    if caller.agents is not None:
        raise AgentAccessDenied("Webhooks belong to the whole service; a key restricted to some agents cannot manage them.")
    return caller


def _webhook_id(request: Request) -> int:
    raw = request.path_params["webhook_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ResourceNotFound("No such webhook.")
    return int(raw)


async def list_webhooks(request: Request) -> Response:
    await _caller(request)
    return json_response(await services(request).webhooks.list(page(request)))


async def create_webhook(request: Request) -> Response:
    caller = await _caller(request)
    body = await json_body(request, NewWebhook)
    webhook, secret = await services(request).webhooks.register(body, caller.mode)
    return json_response(WebhookCreated(webhook=webhook, secret=secret), status=201)


async def get_webhook(request: Request) -> Response:
    await _caller(request)
    found = await services(request).webhooks.get(_webhook_id(request))
    return json_response(WebhookEnvelope(webhook=view(found)))


async def update_webhook(request: Request) -> Response:
    caller = await _caller(request)
    webhook_id = _webhook_id(request)
    changes = await json_body(request, WebhookChanges)
    updated = await services(request).webhooks.update(webhook_id, changes, caller.mode)
    return json_response(WebhookEnvelope(webhook=updated))


async def delete_webhook(request: Request) -> Response:
    await _caller(request)
    await services(request).webhooks.delete(_webhook_id(request))
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    await _caller(request)
    webhook_id = _webhook_id(request)
    return json_response(await services(request).webhooks.deliveries(webhook_id, page(request)))
