"""What every handler shares: the services, authentication, bounded JSON bodies, JSON answers."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from chatspark.apikeys import Principal, authenticate
from chatspark.errors import AgentNotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from chatspark.pagination import PageQuery, page_query
from chatspark.request_context import EXTRA_HEADERS
from chatspark.schemas import decode_body
from chatspark.services import Services

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def services(request: Request) -> Services:
    return request.app.state.services


async def principal(request: Request, scope: str, *alternatives: str) -> Principal:
    """The caller's checked key, which must carry `scope` (or one of `alternatives`). From here on,
    every response to this request (errors and streams included) carries the key's mode and
    rate-limit headers."""
    svc = services(request)
    sent = request.headers.getlist("authorization")
    if len(sent) > 1:
        # Proxies and servers disagree on which of two would win; refuse rather than pick one.
        raise ValidationFailed.field("Authorization", "must be sent once")
    caller = await authenticate(svc.store, sent[0] if sent else None, svc.config.limits)
    response_headers(request).update(caller.headers())
    if not any(other in caller.scopes for other in alternatives):
        caller.require(scope)
    return caller


async def agent_access(request: Request, scope: str) -> tuple[int, Principal]:
    """The path's agent, which exists and which the checked caller (with `scope`) may use."""
    caller = await principal(request, scope)
    agent = agent_id(request)
    caller.require_agent(agent)
    await services(request).agents.cached(agent)
    return agent, caller


def response_headers(request: Request) -> dict[str, str]:
    """Headers RequestContext adds to this request's response, whatever produces it."""
    return request.scope.setdefault(EXTRA_HEADERS, {})


def agent_id(request: Request) -> int:
    """`123` or `ag_123` from the path; anything else names no agent."""
    raw = request.path_params["agent_id"]
    digits = raw[3:] if raw.startswith("ag_") else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise AgentNotFound()
    return int(digits)


async def json_body(request: Request, kind: type[T], limit: int | None = None) -> T:
    # No Content-Type is read as JSON (scripts and raw clients often send none); one that names
    # another type is refused rather than guessed past: a form or text body never passes by luck.
    content_types = request.headers.getlist("content-type")
    if content_types and (len(content_types) > 1 or not _is_json(content_types[0])):
        raise UnsupportedMediaType()
    limit = limit or services(request).config.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    return decode_body(bytes(body), kind)


def _is_json(content_type: str) -> bool:
    """`application/json` or a structured `application/…+json`, with any parameters (`charset`)."""
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))


def page(request: Request) -> PageQuery:
    return page_query(request.query_params)


def idempotency_key(request: Request) -> str | None:
    """The optional `Idempotency-Key` header: 1–255 printable ASCII characters."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ValidationFailed.field("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
    return key


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(payload), status_code=status, headers=headers, media_type="application/json")
