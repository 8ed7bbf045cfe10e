"""Outermost middleware: the request id on every response and log line, one access log line per
request, and the error envelope for anything that escaped everything else."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatspark import logs
from chatspark.api.errors import error_response
from chatspark.errors import InternalError

log = logging.getLogger("chatspark.access")
MAX_REQUEST_ID = 128
# Scope key of a dict of headers that handlers add to whatever response the request ends with.
EXTRA_HEADERS = "chatspark.response_headers"


def accepted_request_id(value: bytes | None) -> str | None:
    """A client's id if printable ASCII and at most 128 characters; else None (we mint one)."""
    if not value or len(value) > MAX_REQUEST_ID:
        return None
    if not all(0x20 <= byte <= 0x7E for byte in value):
        return None
    return value.decode("ascii")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = accepted_request_id(supplied) or "req_" + secrets.token_hex(12)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get(EXTRA_HEADERS) or {}
                replaced = {b"x-request-id", *(name.encode() for name in extra)}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                headers.append((b"x-request-id", rid.encode()))
                headers.extend((name.encode(), value.encode()) for name, value in extra.items())
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not status:
                await error_response(InternalError())(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                # The raw path stays percent-encoded: a decoded %0A could forge a log line.
                scope.get("raw_path", b"").decode("latin-1")[:200],
                status or "-",
                (time.perf_counter() - started) * 1000,
            )
            logs.request_id.reset(token)
