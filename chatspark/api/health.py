"""GET /api/v1/health: is this replica able to serve (its store reachable)? No auth."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatspark.api.http import json_response, services
from chatspark.clock import iso, now_ms
from chatspark.schemas import Health
from chatspark.store.errors import StoreUnavailable


async def health(request: Request) -> Response:
    store = services(request).store
    failed = []
    try:
        await store.ping()
    except StoreUnavailable:
        failed.append("store")
    body = Health(
        status="degraded" if failed else "ok",
        version="1",
        timestamp=iso(now_ms()),
        store="embedded" if store.embedded else "redis",
        failed=failed,
    )
    return json_response(body, status=503 if failed else 200)
