"""GET /openapi.json: the OpenAPI 3.1 document of the API, generated from the msgspec wire types."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import services
from chatspark.openapi import document_json


async def openapi(request: Request) -> Response:
    config = services(request).config
    body = document_json(config.server.max_message_chars, tuple(config.models))
    return Response(body, media_type="application/json")
